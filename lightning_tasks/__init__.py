"""lightning_tasks package."""
