"""Metrics that every layer above may use: image (PSNR, SSIM, encoded/novel view split)."""
