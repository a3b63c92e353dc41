"""Metrics that every layer above may use: image (PSNR, SSIM, encoded/novel view split) and
pointcloud (Chamfer variants, F-score, nearest-class judgement, COV / MMD / 1-NNA)."""
