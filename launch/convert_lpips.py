"""Convert the public LPIPS-VGG weights (torch files) into the npz that ga_jax loads; no torch.

    python -m launch.convert_lpips --vgg=PATH/vgg16-397923af.pth \
        --lin=PATH/lpips/weights/v0.1/vgg.pth --out=PATH/lpips_vgg.npz

vgg16-397923af.pth: https://download.pytorch.org/models/vgg16-397923af.pth (torchvision).
vgg.pth: in the lpips 0.1.4 wheel (`pip download lpips==0.1.4 --no-deps`, unzip the wheel).
Reads the 528 MB torchvision file (not run here on the real one); the npz holds the 14.7M
trunk + head weights (~59 MB).
Then: ga_jax.losses.lpips.load_lpips_params(out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ga_jax.losses.lpips import convert_lpips_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vgg", type=Path, required=True, help="torchvision vgg16-397923af.pth")
    parser.add_argument("--lin", type=Path, required=True, help="lpips weights/v0.1/vgg.pth")
    parser.add_argument("--out", type=Path, required=True, help="npz to write")
    args = parser.parse_args(argv)
    flat = convert_lpips_weights(args.vgg, args.lin, args.out)
    count = sum(v.size for v in flat.values())
    print(f"wrote {args.out}: {len(flat)} arrays, {count:,} float32 parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
