"""The spike-train source Lava process (``process.SpikeInput``) and its models (``models``)."""
