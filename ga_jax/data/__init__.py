"""Data: readers of the G-buffer Objaverse format (DESIGN.md section 1) and of PLY point clouds
(ply: any vertex layout users bring; the data's fps-4096.ply)."""
