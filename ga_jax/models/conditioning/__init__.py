"""Condition encoders of the flow stages, each -> (tokens, pooled)."""
