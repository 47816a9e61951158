"""The DH-LIF Lava process (``process.DHLIF``) and its floating- and fixed-point models (``models``)."""
