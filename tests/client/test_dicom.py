"""DICOM reading: rescale, VOI, MONOCHROME1 inversion, 16-bit PNG output, spacing, no identifiers."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from seg4reg_tf.client.dicom import is_dicom, read_dicom, to_uint16

SECRET_NAME = "Doe^Jane^SECRETNAME"
SECRET_ID = "PIDSECRET12345"


def write_dicom(path, pixels: np.ndarray, photometric: str = "MONOCHROME2", spacing=(0.2, 0.25), **extra) -> bytes:
    """A minimal Part-10 DICOM (uint16 pixels) holding fake patient identifiers; returns its bytes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = SECRET_NAME
    ds.PatientID = SECRET_ID
    ds.PatientBirthDate = "19700101"
    ds.StudyDate = "20240102"
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if spacing is not None:
        ds.PixelSpacing = [str(s) for s in spacing]
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path.read_bytes()


def _decode(png: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.dtype == np.uint16
    return img


def _ramp(h=70, w=90) -> np.ndarray:
    return np.tile(np.linspace(0, 4095, w), (h, 1)).round().astype(np.uint16)


def test_monochrome2_to_16bit_png(tmp_path):
    pixels = _ramp()
    data = write_dicom(tmp_path / "a.dcm", pixels)
    assert is_dicom(data)
    out = read_dicom(tmp_path / "a.dcm")
    img = _decode(out.png_bytes)
    assert img.shape == pixels.shape
    np.testing.assert_allclose(img, pixels / 4095.0 * 65535.0, atol=1.0)  # min-max to the full 16 bits
    assert out.pixel_spacing_mm == (0.2, 0.25)
    assert out.photometric == "MONOCHROME2"


def test_monochrome1_is_inverted_like_the_monochrome2_equivalent(tmp_path):
    pixels = _ramp()
    write_dicom(tmp_path / "m1.dcm", pixels, "MONOCHROME1")
    write_dicom(tmp_path / "m2.dcm", 4095 - pixels, "MONOCHROME2")
    m1 = _decode(read_dicom(tmp_path / "m1.dcm").png_bytes)
    m2 = _decode(read_dicom(tmp_path / "m2.dcm").png_bytes)
    assert np.max(np.abs(m1.astype(int) - m2.astype(int))) <= 1
    assert m1[0, 0] == 65535 and m1[0, -1] == 0  # low stored value = bright in MONOCHROME1


def test_rescale_and_window_applied(tmp_path):
    pixels = _ramp()
    # Negative slope flips the values: the modality LUT must be applied before normalising.
    write_dicom(tmp_path / "neg.dcm", pixels, RescaleSlope="-1", RescaleIntercept="0")
    img = _decode(read_dicom(tmp_path / "neg.dcm").png_bytes)
    np.testing.assert_allclose(img, (4095 - pixels) / 4095.0 * 65535.0, atol=1.0)
    # A window over the lower half: everything above it saturates, the window maps linearly.
    write_dicom(tmp_path / "win.dcm", pixels, WindowCenter="1024", WindowWidth="2048")
    img = _decode(read_dicom(tmp_path / "win.dcm").png_bytes).astype(float) / 65535.0
    expected = np.clip(pixels / 2048.0, 0, 1)
    np.testing.assert_allclose(img, expected, atol=0.01)
    assert np.all(img[pixels >= 2100] == 1.0)


def test_no_spacing_and_no_identifiers(tmp_path):
    write_dicom(tmp_path / "b.dcm", _ramp(), spacing=None)
    out = read_dicom((tmp_path / "b.dcm").read_bytes(), name="b.dcm")
    assert out.pixel_spacing_mm is None
    blob = out.png_bytes + repr(out).encode()
    for secret in (b"SECRETNAME", SECRET_ID.encode(), b"19700101", b"20240102"):
        assert secret not in blob


def test_bad_dicom_named(tmp_path):
    with pytest.raises(ValueError, match="broken.dcm"):
        read_dicom(b"\0" * 128 + b"DICM" + b"garbage", name="broken.dcm")
    with pytest.raises(ValueError, match="grayscale"):
        px = np.zeros((8, 8), np.uint16)
        write_dicom(tmp_path / "rgb.dcm", px, "YBR_FULL")
        read_dicom(tmp_path / "rgb.dcm", name="rgb.dcm")


def test_to_uint16_constant_image():
    assert to_uint16(np.full((3, 3), 7.0), invert=False).max() == 0
    np.testing.assert_array_equal(to_uint16(np.array([[0.0, 2.0]]), invert=True), [[65535, 0]])


def test_dicom_without_pixel_data_says_so(tmp_path):
    """Issue 12 (7): a header-only DICOM is named and explained, not "(AttributeError)"."""
    data = write_dicom(tmp_path / "full.dcm", _ramp())
    import pydicom

    ds = pydicom.dcmread(tmp_path / "full.dcm")
    del ds.PixelData
    ds.save_as(str(tmp_path / "nopixels.dcm"), enforce_file_format=True)
    assert data
    with pytest.raises(ValueError, match=r"nopixels\.dcm: the DICOM file has no pixel data") as err:
        read_dicom(tmp_path / "nopixels.dcm", name="nopixels.dcm")
    assert "AttributeError" not in str(err.value) and SECRET_NAME not in str(err.value)
