"""Bad input: corrupt files, shapes that do not fit, unmapped modules, unsupported nodes, unwritable paths."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import nir
import norse.torch as nt
import numpy as np
import pytest
import scipy.sparse
import torch

import nir_bridge as nb
from norse_dh.modules import DHLIF, LeakyReadout, SequentialSNN


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.nir"
    nb.write_nir(nb.export_model(SequentialSNN(DHLIF(6, 4, 2), LeakyReadout(4, 2)), 1e-3), path)
    return path


def test_truncated_file_is_reported_as_truncated_or_corrupt(good_file: Path, tmp_path: Path):
    data = good_file.read_bytes()
    cut = tmp_path / "cut.nir"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(nb.NIRFileError, match="truncated or corrupt"):
        nb.read_nir(cut)
    with pytest.raises(nb.NIRFileError):
        nb.import_graph(cut)


def test_random_bytes_are_not_a_nir_file(tmp_path: Path):
    bad = tmp_path / "noise.nir"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(nb.NIRFileError, match="not valid HDF5"):
        nb.read_nir(bad)


def test_hdf5_without_a_graph_and_missing_files(tmp_path: Path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(nb.NIRFileError, match="holds no NIR graph"):
        nb.read_nir(other)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nb.read_nir(tmp_path / "absent.nir")


def _misfit_graph() -> nir.NIRGraph:
    nodes = {
        "input": nir.Input(input_type=np.array([5])),
        "fc": nir.Linear(weight=np.ones((4, 3))),  # expects 3 inputs, gets 5
        "output": nir.Output(output_type=np.array([4])),
    }
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "output")], metadata={}, type_check=False)


def test_graph_whose_shapes_do_not_fit_is_rejected(tmp_path: Path):
    path = tmp_path / "misfit.nir"
    nir.write(str(path), _misfit_graph())
    with pytest.raises(nb.NIRFileError, match="do not fit together"):
        nb.read_nir(path)
    with pytest.raises(nb.NIRFileError, match="do not fit together"):
        nb.import_graph(_misfit_graph())


def test_module_without_mapping_is_named():
    model = SequentialSNN(DHLIF(6, 4, 2), torch.nn.Conv1d(4, 4, 3), LeakyReadout(4, 2))
    with pytest.raises(nb.UnsupportedModuleError, match=r"^1: torch\.nn\.modules\.conv\.Conv1d has no NIR mapping"):
        nb.export_model(model, 1e-3)
    with pytest.raises(nb.UnsupportedModuleError, match="input_size="):
        nb.export_model(nt.LIFBoxCell(), 1e-3)
    with pytest.raises(ValueError, match="dt must be a positive"):
        nb.export_model(DHLIF(3, 2, 2), 0.0)


def test_all_unsupported_nodes_are_listed_in_one_error():
    nodes = {
        "input": nir.Input(input_type=np.array([3])),
        "delay": nir.Delay(delay=np.ones(3)),
        "integ": nir.I(r=np.ones(3)),
        "fc": nir.Linear(weight=np.eye(3)),
        "output": nir.Output(output_type=np.array([3])),
    }
    edges = [("input", "delay"), ("delay", "integ"), ("integ", "fc"), ("fc", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})
    with pytest.raises(nb.UnsupportedNodeError) as info:
        nb.import_graph(graph)
    assert "'delay' (Delay)" in str(info.value) and "'integ' (I)" in str(info.value)
    assert "'fc'" not in str(info.value)


def test_unwritable_paths_raise_and_leave_nothing(tmp_path: Path):
    graph = nb.export_model(DHLIF(4, 3, 2), 1e-3)
    with pytest.raises(nb.NIRFileError, match="does not exist"):
        nb.write_nir(graph, tmp_path / "no" / "such" / "dir" / "m.nir")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(nb.NIRFileError, match="does not exist"):
        nb.write_nir(graph, blocker / "m.nir")
    with pytest.raises(nb.NIRFileError, match="is a directory"):
        nb.write_nir(graph, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_failed_write_leaves_no_partial_file_and_keeps_an_existing_one(tmp_path: Path):
    graph = nb.export_model(DHLIF(4, 3, 2), 1e-3)
    target = tmp_path / "m.nir"
    nb.write_nir(graph, target)
    before = target.read_bytes()
    # nir.write itself fails half way on sparse weights (object dtype)
    sparse = nir.Linear(weight=scipy.sparse.csr_matrix(np.eye(3)))
    nodes = {
        "input": nir.Input(input_type=np.array([3])),
        "fc": sparse,
        "output": nir.Output(output_type=np.array([3])),
    }
    broken = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "output")], metadata={}, type_check=False)
    with pytest.raises(nb.NIRFileError, match="no file written"):
        nb.write_nir(broken, target)
    with pytest.raises(nb.NIRFileError, match="no file written"):
        nb.write_nir(broken, tmp_path / "new.nir")
    graph.metadata["bad"] = None
    with pytest.raises(nb.NIRFileError, match="None"):
        nb.write_nir(graph, tmp_path / "none.nir")
    assert sorted(os.listdir(tmp_path)) == ["m.nir"]
    assert target.read_bytes() == before
