"""The flow stages' point DiT (dit), its construction from config (build) and what a stage
adds around it: parameters with a trainable conditioner, the velocity function (stage)."""
