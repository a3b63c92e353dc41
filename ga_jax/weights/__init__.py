"""Torch-free access to public pretrained weights (torch .pth/.pt files read with numpy)."""
