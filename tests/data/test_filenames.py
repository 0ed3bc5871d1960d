import numpy as np
import pytest

from vpr.data.filenames import (
    FIELDS,
    IMAGE_EXTENSIONS,
    format_name,
    name_problem,
    parse_name,
    utm_of,
)
from vpr.errors import DataError

SF_DB = (
    "@0546703.60@4181608.34@10@S@037.78063@-122.46963@779TrKanTEnNt8P6_niqxw@@360@@@@201511@@.jpg"
)
TOKYO_Q = "@0381523.71@3946790.15@54@S@035.65786@0139.69112@00685.jpg@@@@@@@@.jpg"
GSV = "@0288978.63@4639199.28@33@T@041.87657@0012.45697@j-f1t6evIeljEKSGJtl3Aw@@002@@@@202012@284_Rome@.jpg"


def test_parses_the_real_examples():
    sf = parse_name(SF_DB)
    assert (sf.utm_east, sf.utm_north, sf.utm_zone, sf.utm_band) == (
        546703.60,
        4181608.34,
        "10",
        "S",
    )
    assert sf.heading == "360" and sf.timestamp == "201511" and sf.note == ""
    tokyo = parse_name(TOKYO_Q)
    assert tokyo.pano_id == "00685.jpg" and tokyo.utm_east == 381523.71
    gsv = parse_name(GSV)
    assert gsv.note == "284_Rome" and gsv.heading == "002" and gsv.lon == "0012.45697"


def test_only_the_basename_is_split():
    assert parse_name("/data/odd@folder/" + SF_DB).utm_north == 4181608.34


@pytest.mark.parametrize(
    "bad",
    [
        "photo.jpg",
        "@12@34@.jpg",
        "@abc@4181608.34@10@S@@@@@@@@@@@.jpg",
        "@nan@1@10@S@@@@@@@@@@@.jpg",
        "x" + SF_DB,
    ],
)
def test_malformed_names_name_the_file(bad):
    with pytest.raises(DataError, match="photo.jpg|@") as err:
        parse_name("/some/dir/" + bad)
    assert bad in str(err.value) and "\n" not in str(err.value)


def test_format_round_trips_with_usual_padding():
    name = format_name(
        546703.6,
        4181608.34,
        10,
        "S",
        37.78063,
        -122.46963,
        "pano",
        "",
        5,
        -3,
        "",
        "",
        "201511",
        "12_Paris",
    )
    assert name.startswith("@0546703.60@4181608.34@10@S@037.78063@-122.46963@pano@@005@-03@")
    assert len(name.split("@")) == len(FIELDS) + 2
    back = parse_name(name)
    assert back.note == "12_Paris" and back.utm_east == 546703.6


def test_format_refuses_separators_in_fields():
    with pytest.raises(ValueError):
        format_name(1.0, 2.0, note="a@b")


def test_utm_of_many():
    assert np.allclose(utm_of([SF_DB, TOKYO_Q]), [[546703.60, 4181608.34], [381523.71, 3946790.15]])


PATTERN = "@UTM_east@UTM_north@zone@band@lat@lon@pano_id@tile@heading@pitch@roll@height@timestamp@note@.jpg"


@pytest.mark.parametrize("count", [13, 15])
def test_wrong_field_count_with_good_coordinates_says_how_many_and_shows_the_pattern(count):
    tokens = SF_DB.split("@")[1:-1]  # the 14 fields
    name = "@" + "@".join((tokens + ["extra"])[:count]) + "@.jpg"
    with pytest.raises(DataError) as err:
        parse_name("/d/" + name)
    msg = str(err.value)
    assert (
        f"has {count} '@' fields, expected {len(FIELDS)}" in msg
        and PATTERN in msg
        and "\n" not in msg
    )
    assert name_problem(name) == f"with {count} '@' fields instead of {len(FIELDS)}"
    assert name_problem("IMG_0001.jpg") == "without coordinates in the name"
    assert name_problem(SF_DB) is None


@pytest.mark.parametrize("ext", [".webp", ".tif", ".tiff", ".bmp", ".JPG"])
def test_other_image_formats_are_image_extensions(ext):
    assert ext.lower() in IMAGE_EXTENSIONS
