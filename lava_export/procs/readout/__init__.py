"""The leaky-integrator readout Lava process (``process.LeakyIntegrator``) and its models (``models``)."""
