"""lava_export package."""
