"""File formats: fastMRI HDF5, the medrecon sinogram HDF5, DICOM, NIfTI, PNG/NPY; all writes atomic."""
from __future__ import annotations

from medrecon.io.atomic import TMP_PREFIX, atomic_path
from medrecon.io.dicom import DicomVolume, read_dicom
from medrecon.io.fastmri import (
    FastMRIHeader,
    FastMRIVolume,
    center_crop,
    crop_size_for,
    make_ismrmrd_header,
    parse_ismrmrd_header,
    read_fastmri,
    read_reconstruction,
    write_fastmri,
    write_reconstruction,
)
from medrecon.io.images import LoadedImage, read_image, read_nifti, save_figure, write_nifti
from medrecon.io.sinogram import SinogramVolume, read_sinogram, write_sinogram

__all__ = [
    "TMP_PREFIX", "atomic_path", "DicomVolume", "read_dicom", "FastMRIHeader", "FastMRIVolume", "center_crop",
    "crop_size_for", "make_ismrmrd_header", "parse_ismrmrd_header", "read_fastmri", "read_reconstruction",
    "write_fastmri", "write_reconstruction", "LoadedImage", "read_image", "read_nifti", "save_figure",
    "write_nifti", "SinogramVolume", "read_sinogram", "write_sinogram",
]
