"""seg4reg-tf: Seg4Reg+ (joint spine segmentation and Cobb angle regression) in TensorFlow/Keras."""
from setuptools import find_packages, setup

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
]

setup(
    name="seg4reg-tf",
    version="0.1.0",
    description="Seg4Reg+ scoliosis measurement (segmentation + Cobb angle regression) in TensorFlow/Keras",
    packages=find_packages(include=["seg4reg_tf", "seg4reg_tf.*"]),
    package_data={"seg4reg_tf": ["configs/*.yaml"]},
    python_requires=">=3.10,<3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest==9.2.0"]},
    entry_points={"console_scripts": ["seg4reg=seg4reg_tf.cli:main"]},
)
