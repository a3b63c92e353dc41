"""Exports that open in the usual 3D tools: ply (surfel PLY in the 2DGS layout)."""
