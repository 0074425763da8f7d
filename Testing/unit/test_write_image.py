"""``fileio.write_image_atomically``: an output path that cannot be written is one message naming the path and
the reason, and exit code 2 (a user's mistake, not "unexpected; please report it")."""

from __future__ import annotations

import errno
import os

import pytest
import SimpleITK as sitk

from AllStageTraining.exit_codes import EXIT_BAD_INPUT, error_message, exit_code_for
from AllStageTraining.fileio import OutputPathError, _why_unwritable, write_image_atomically


def _image() -> sitk.Image:
    return sitk.Image([4, 5, 6], sitk.sitkUInt8) + 1


def test_an_image_is_written_through_a_temporary_file(tmp_path):
    path = write_image_atomically(_image(), tmp_path / "new" / "seg.nii.gz")
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path))).min() == 1
    assert [p.name for p in path.parent.iterdir()] == ["seg.nii.gz"]


@pytest.mark.parametrize("where, reason", [
    ("under a file", "is a file, not a folder"),
    ("deeper under a file", "is a file, not a folder"),
    ("a folder", "it is a folder; give a file name"),
    ("no format", "no image format for a file named like that"),
])
def test_paths_that_cannot_take_an_image_say_why(where, reason, tmp_path):
    (tmp_path / "file").write_text("")
    (tmp_path / "folder").mkdir()
    path = {"under a file": tmp_path / "file" / "seg.nii.gz", "deeper under a file": tmp_path / "file" / "a" / "s.nii",
            "a folder": tmp_path / "folder", "no format": tmp_path / "seg.png.txt"}[where]
    with pytest.raises(OutputPathError) as raised:
        write_image_atomically(_image(), path)
    assert str(raised.value).startswith(f"cannot write {path}: ") and reason in str(raised.value)
    assert exit_code_for(raised.value) == EXIT_BAD_INPUT
    assert error_message(raised.value, EXIT_BAD_INPUT) == str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]  # no temporary file left


def test_a_folder_that_refuses_files_says_so(tmp_path):
    """A real refusal where this machine has one (/sys takes no new files even for root), else skipped."""
    target = "/sys/allstageseg_test/seg.nii.gz"
    try:
        os.makedirs(os.path.dirname(target))
    except OSError:
        pass
    else:
        os.rmdir(os.path.dirname(target))
        pytest.skip("this machine lets /sys take a folder")
    with pytest.raises(OutputPathError, match=r"^cannot write /sys/allstageseg_test/seg\.nii\.gz: permission denied"):
        write_image_atomically(_image(), target)


@pytest.mark.parametrize("code, words", [(errno.EACCES, "permission denied"), (errno.EROFS, "read-only"),
                                         (errno.ENOSPC, "no space left")])
def test_os_errors_are_said_in_words(code, words, tmp_path):
    assert words in _why_unwritable(tmp_path / "seg.nii.gz", OSError(code, os.strerror(code)))
