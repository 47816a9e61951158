"""State helpers: detach a (nested) state for truncated BPTT."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._pytree import tree_map


def detach_state(state: Any) -> Any:
    """Detach every tensor in a state (NamedTuples, lists and dicts are kept as they are).

    Used for truncated BPTT: the values carry over, the graph does not.
    """
    return tree_map(lambda v: v.detach() if isinstance(v, torch.Tensor) else v, state)
