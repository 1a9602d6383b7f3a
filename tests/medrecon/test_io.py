"""I/O: fastMRI h5 (layout, header, crop rule, slice selection), leaderboard/NIfTI/sinogram writes, DICOM,
and one test per kind of bad input (each must raise MedreconError naming the file)."""
import os

import h5py
import numpy as np
import pytest

from medrecon import MedreconError
from medrecon import io as mio
from medrecon.io import fastmri


def _header(enc=(640, 372, 1), rec=(320, 320, 1), center=186, maximum=371) -> bytes:
    return fastmri.make_ismrmrd_header(enc, rec, center=center, maximum=maximum, field_of_view_mm=(240.0, 240.0, 3.0))


def make_fastmri(path, *, slices=3, coils=None, h=24, w=20, target=True, mask=None, header=True, kspace=None):
    rng = np.random.default_rng(0)
    shape = (slices, h, w) if coils is None else (slices, coils, h, w)
    k = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64) if kspace is None else kspace
    with h5py.File(path, "w") as hf:
        hf.create_dataset("kspace", data=k)
        if header:
            hf.create_dataset("ismrmrd_header", data=_header((h, w, 1), (16, 16, 1), w // 2, w - 1))
        if target:
            key = "reconstruction_esc" if coils is None else "reconstruction_rss"
            hf.create_dataset(key, data=rng.random((slices, 16, 16)).astype(np.float32))
        if mask is not None:
            hf.create_dataset("mask", data=mask)
            hf.attrs["acceleration"] = 4
            hf.attrs["num_low_frequency"] = 4
        hf.attrs["max"] = 1.5
        hf.attrs["norm"] = 2.5
        hf.attrs["acquisition"] = "CORPD_FBK"
        hf.attrs["patient_id"] = "abc"
    return k


# -- header and crop ------------------------------------------------------------------------------
def test_header_parsing_matches_fastmri_padding_rule():
    h = fastmri.parse_ismrmrd_header(_header())
    assert h.encoding_size == (640, 372, 1) and h.recon_size == (320, 320, 1)
    assert h.padding_left == 372 // 2 - 186 and h.padding_right == h.padding_left + 372
    assert h.field_of_view_mm == (240.0, 240.0, 3.0)


def test_header_missing_element_names_it():
    xml = b'<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding></encoding></ismrmrdHeader>'
    with pytest.raises(MedreconError, match="encodedSpace/matrixSize"):
        fastmri.parse_ismrmrd_header(xml, "f.h5")


def test_crop_size_narrow_flair_rule():
    assert fastmri.crop_size_for((640, 368), (320, 320)) == (320, 320)
    assert fastmri.crop_size_for((640, 260), (320, 320)) == (260, 260)  # FLAIR 203: width < 320


def test_center_crop_offsets_like_fastmri():
    x = np.arange(7 * 6).reshape(7, 6)
    c = fastmri.center_crop(x, (3, 4))
    assert (c == x[2:5, 1:5]).all()  # start (7-3)//2 = 2, (6-4)//2 = 1


# -- round trips ----------------------------------------------------------------------------------
def test_read_singlecoil_train_file(tmp_path):
    k = make_fastmri(tmp_path / "a.h5")
    vol = mio.read_fastmri(tmp_path / "a.h5")
    assert vol.kspace.shape == (3, 1, 24, 20) and not vol.multicoil
    np.testing.assert_array_equal(vol.kspace[:, 0], k)
    assert vol.target_key == "reconstruction_esc" and vol.target.shape == (3, 16, 16)
    assert vol.attrs["acquisition"] == "CORPD_FBK" and vol.attrs["max"] == 1.5 and vol.attrs["patient_id"] == "abc"
    assert vol.crop_size == (16, 16) and vol.mask is None


def test_read_multicoil_test_file_with_mask_and_slice_subset(tmp_path):
    mask = np.zeros(20, np.float32)
    mask[::4] = 1
    k = make_fastmri(tmp_path / "m.h5", slices=5, coils=4, target=False, mask=mask)
    vol = mio.read_fastmri(tmp_path / "m.h5", slices=[4, 1])
    assert vol.multicoil and vol.slices == [1, 4] and vol.num_slices == 5
    np.testing.assert_array_equal(vol.kspace, k[[1, 4]])
    assert vol.mask.dtype == bool and vol.mask.sum() == 5
    assert vol.acceleration == 4 and vol.num_low_frequency == 4 and vol.target is None


def test_write_fastmri_then_read(tmp_path):
    k = (np.ones((2, 3, 16, 12)) * (1 + 2j)).astype(np.complex64)
    mio.write_fastmri(tmp_path / "w.h5", k, mask=np.ones(12), target=np.ones((2, 16, 12), np.float32), attrs={"acceleration": 1.0})
    vol = mio.read_fastmri(tmp_path / "w.h5", slices=slice(1, 2))
    np.testing.assert_array_equal(vol.kspace, k[1:])
    assert vol.target_key == "reconstruction_rss" and vol.header.recon_size == (16, 12, 1)


def test_leaderboard_layout_round_trip(tmp_path):
    rec = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    mio.write_reconstruction(tmp_path / "r.h5", rec, {"method": "tv"})
    with h5py.File(tmp_path / "r.h5") as hf:
        assert list(hf.keys()) == ["reconstruction"] and hf["reconstruction"].dtype == np.float32
    back, attrs = mio.read_reconstruction(tmp_path / "r.h5")
    np.testing.assert_array_equal(back, rec)
    assert attrs["method"] == "tv"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_nifti_round_trip_and_affine(tmp_path):
    import nibabel as nib

    vol = np.random.default_rng(0).random((3, 6, 5)).astype(np.float32)
    mio.write_nifti(tmp_path / "v.nii.gz", vol, (0.5, 0.7, 3.0))
    img = nib.load(str(tmp_path / "v.nii.gz"))
    assert img.shape == (5, 6, 3)  # (column, row, slice)
    np.testing.assert_allclose(np.diag(img.affine), [0.5, 0.7, 3.0, 1.0])
    back, zooms = mio.read_nifti(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(back, vol)
    assert zooms == pytest.approx((0.5, 0.7, 3.0))


def test_sinogram_round_trip(tmp_path):
    s = mio.SinogramVolume(sinogram=np.ones((2, 5, 7), np.float32), angles=np.linspace(0, 3, 5), geometry="fan",
                           image_size=4, source_distance=8.0, detector_distance=8.0, detector_type="flat",
                           ground_truth=np.zeros((2, 4, 4), np.float32), pixel_size_mm=0.5)
    mio.write_sinogram(tmp_path / "s.h5", s)
    back = mio.read_sinogram(tmp_path / "s.h5", slices=[1])
    assert back.sinogram.shape == (1, 5, 7) and back.detectors == 7 and back.geometry == "fan"
    assert back.detector_type == "flat" and back.source_distance == 8.0 and back.pixel_size_mm == 0.5
    np.testing.assert_allclose(back.angles, s.angles)
    assert back.ground_truth.shape == (1, 4, 4) and back.units == "HU*pixel"


def test_sinogram_angles_mismatch(tmp_path):
    s = mio.SinogramVolume(sinogram=np.ones((1, 5, 7), np.float32), angles=np.zeros(4), image_size=4)
    with pytest.raises(MedreconError, match=r"'angles' must have shape \[5\]"):
        mio.write_sinogram(tmp_path / "s.h5", s)


def _write_dicom(path, pixels, position, instance, slope=2.0, intercept=-1024.0, series="1.2.3", modality="CT",
                 padding_value=None, signed=False):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = modality, series, instance
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, position], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [0.8, 0.6], 2.0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, int(signed)
    ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    if padding_value is not None:
        ds.add_new(0x00280120, "US", padding_value)  # PixelPaddingValue
    if slope is None:
        del ds.RescaleSlope, ds.RescaleIntercept
    ds.save_as(str(path), enforce_file_format=True)


def test_dicom_series_sorted_by_position_in_hu(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for i, z in enumerate([6.0, 0.0, 3.0]):  # files out of order
        _write_dicom(folder / f"im{i}.dcm", np.full((4, 5), 100 * (i + 1)), z, instance=i + 1)
    (folder / "notes.txt").write_text("not dicom")
    vol = mio.read_dicom(folder)
    assert vol.volume.shape == (3, 4, 5) and vol.modality == "CT" and vol.rescaled
    np.testing.assert_allclose(vol.volume[:, 0, 0], [2 * 200 - 1024, 2 * 300 - 1024, 2 * 100 - 1024])  # z = 0, 3, 6
    assert vol.slice_spacing == pytest.approx(3.0) and vol.pixel_spacing == (0.8, 0.6)
    img = mio.read_image(folder / "im0.dcm")
    assert img.hounsfield and img.volume.shape == (1, 4, 5)


def test_dicom_padding_becomes_air(tmp_path):
    """PixelPaddingValue pixels and CT values below −1024 HU (outside the reconstruction circle) read
    as air; ``padding="keep"`` returns the stored values."""
    stored = np.array([[5, 100, 600], [600, 700, 12]])  # HU = 2·stored − 1024: −1014, −824, 176, …, −1000
    path = tmp_path / "ct.dcm"
    _write_dicom(path, stored, 0.0, 1, padding_value=5)
    kept = mio.read_dicom(path, padding="keep")
    np.testing.assert_array_equal(kept.volume[0], 2.0 * stored - 1024)
    assert kept.padded == 0
    air = mio.read_dicom(path)
    expect = 2.0 * stored - 1024
    expect[0, 0] = -1000.0  # the tagged padding value, although −1014 HU would be in range
    np.testing.assert_array_equal(air.volume[0], expect)
    assert air.padded == 1

    untagged = tmp_path / "ge.dcm"  # e.g. GE: −2000 HU outside the circle, no tag
    _write_dicom(untagged, stored, 0.0, 1, slope=1.0, intercept=-1500.0)
    v = mio.read_dicom(untagged)
    np.testing.assert_array_equal(v.volume[0], np.where(stored < 476, -1000.0, stored - 1500.0))
    assert v.padded == 3 and mio.read_image(untagged).volume.min() == -1000.0

    signed = tmp_path / "signed.dcm"  # −2000 written as US 63536 for signed pixels
    pixels = np.array([[-2000, 10], [20, -2000]])
    _write_dicom(signed, pixels, 0.0, 1, slope=None, modality="MR", padding_value=63536, signed=True)
    np.testing.assert_array_equal(mio.read_dicom(signed).volume[0], [[10, 10], [20, 10]])

    mr = tmp_path / "mr.dcm"  # no Hounsfield scale: padding takes the smallest unpadded value
    _write_dicom(mr, stored, 0.0, 1, slope=None, modality="MR", padding_value=600)
    np.testing.assert_array_equal(mio.read_dicom(mr).volume[0], [[5, 100, 5], [5, 700, 12]])


# -- bad input: one test each ---------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(MedreconError, match=r"nope\.h5: no such file"):
        mio.read_fastmri(tmp_path / "nope.h5")


def test_dicom_unknown_padding_mode(tmp_path):
    path = tmp_path / "ct.dcm"
    _write_dicom(path, np.zeros((4, 4)), 0.0, 1)
    with pytest.raises(MedreconError, match=r"padding must be one of \('air', 'keep'\), received 'zero'"):
        mio.read_dicom(path, padding="zero")


def test_not_hdf5(tmp_path):
    (tmp_path / "x.h5").write_text("hello")
    with pytest.raises(MedreconError, match=r"x\.h5: not an HDF5 file"):
        mio.read_fastmri(tmp_path / "x.h5")


def test_truncated_hdf5(tmp_path):
    make_fastmri(tmp_path / "t.h5", slices=4, h=64, w=64)
    data = (tmp_path / "t.h5").read_bytes()
    (tmp_path / "t.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(MedreconError, match=r"t\.h5: .*(truncated|corrupt)"):
        mio.read_fastmri(tmp_path / "t.h5")


def test_missing_kspace(tmp_path):
    with h5py.File(tmp_path / "k.h5", "w") as hf:
        hf.create_dataset("reconstruction_esc", data=np.zeros((1, 4, 4)))
    with pytest.raises(MedreconError, match=r"k\.h5: no 'kspace' dataset \(found: reconstruction_esc\)"):
        mio.read_fastmri(tmp_path / "k.h5")


def test_wrong_rank(tmp_path):
    make_fastmri(tmp_path / "r.h5", kspace=np.zeros((4, 4), np.complex64), target=False, header=False)
    with pytest.raises(MedreconError, match=r"r\.h5: 'kspace' must have rank 3 .* received shape \(4, 4\)"):
        mio.read_fastmri(tmp_path / "r.h5")


def test_wrong_dtype(tmp_path):
    make_fastmri(tmp_path / "d.h5", kspace=np.zeros((1, 4, 4), np.float32), target=False, header=False)
    with pytest.raises(MedreconError, match=r"d\.h5: 'kspace' must be complex .* float32"):
        mio.read_fastmri(tmp_path / "d.h5")


def test_nan_in_kspace(tmp_path):
    k = np.zeros((3, 8, 8), np.complex64)
    k[2, 1, 1] = np.nan
    make_fastmri(tmp_path / "n.h5", kspace=k, target=False, header=False)
    with pytest.raises(MedreconError, match=r"n\.h5: 'kspace' contains NaN or Inf values \(slices \[2\]\)"):
        mio.read_fastmri(tmp_path / "n.h5")
    assert mio.read_fastmri(tmp_path / "n.h5", slices=[0, 1]).kspace.shape[0] == 2  # only read slices are checked


def test_mask_width_mismatch(tmp_path):
    make_fastmri(tmp_path / "w.h5", mask=np.ones(19, np.float32), target=False)
    with pytest.raises(MedreconError, match=r"w\.h5: 'mask' has width 19 but 'kspace' has 20 columns"):
        mio.read_fastmri(tmp_path / "w.h5")


def test_slice_out_of_range(tmp_path):
    make_fastmri(tmp_path / "s.h5")
    with pytest.raises(MedreconError, match="slice 7 is out of range for a volume of 3 slices"):
        mio.read_fastmri(tmp_path / "s.h5", slices=[7])


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with mio.atomic_path(tmp_path / "o.h5") as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
