"""nir_bridge package."""
