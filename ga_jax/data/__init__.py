"""Data: readers of the G-buffer Objaverse format (DESIGN.md section 1) and its point clouds."""
