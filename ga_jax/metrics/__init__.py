"""Metrics that every layer above may use: image (PSNR, SSIM, encoded/novel view split),
pointcloud (Chamfer variants, F-score, nearest-class judgement, COV / MMD / 1-NNA),
distributions (Frechet distance, KID, exact EMD) and judges (the synthetic set's shape and
colour judges)."""
