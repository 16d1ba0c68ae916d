"""pidoc/catalogue.py and `piDOC_observation.py --catalogue`: many clusters, bad rows refused alone,
and a table that is the same byte for byte on one worker or on a LocalCluster of two."""
import csv
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

import piDOC_observation
from pidoc import catalogue, observations
from pidoc.model import open_model

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TEST_MAPS = PROJECT_ROOT / "input_files" / "luminosity_V_testset.npy"
# Four committed test maps (15–80 kpc), each made into a small 0.25″ image at its own place on the sky.
CATALOGUE_MAPS = (48, 9, 3, 58)
IMAGE_SIZE_ARCSEC = 60.0   # wider than the frame turned by 45° (56.6″), so every frame is complete
PIXEL_SCALE_ARCSEC = 0.25
SINGLE_RUN_FILES = {"piDOC_input_map.npy", "piDOC_input_map.fits", "predictionM.npy", "predictiondistance_age.npy",
                    "predictions_summary.csv", "predictions_summary.txt", "predictionM_intervals.npy",
                    "observation_report.txt", "observation_summary.png"}


def centre_of(position):
    return SkyCoord(150.0 + 2.0 * position, -40.0 + position, unit="deg")


def sky_in_data_units(header):
    """The μ_V = 22.5 sky of `synthetic_image_from_map`, in the image's counts/s per pixel."""
    calibration = {"units": "counts/s", "zeropoint_v_mag": header["ZPVEGA"], "extinction_v_mag": 0.0, "exposure_time_s": header["EXPTIME"]}
    area = PIXEL_SCALE_ARCSEC**2
    return float(observations.data_from_flux_per_pixel(10.0 ** observations.log_flux_per_pixel_from_surface_brightness(22.5, area),
                                                        calibration, area))


def write_catalogue(path, rows):
    columns = ["name", "images", "ra_deg", "dec_deg", "ebv", "zeropoint_vega", "background", "psf_fwhm_arcsec"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in columns})
    return path


@pytest.fixture(scope="module")
def catalogue_of_five(tmp_path_factory):
    """Four synthetic cluster images and a fifth row whose image is missing."""
    directory = tmp_path_factory.mktemp("catalogue")
    maps = np.load(TEST_MAPS, mmap_mode="r")
    rows = []
    for position, map_index in enumerate(CATALOGUE_MAPS):
        centre = centre_of(position)
        hdulist = observations.synthetic_image_from_map(maps[map_index, ..., 0].astype(np.float64), centre, PIXEL_SCALE_ARCSEC,
                                                        15.0 * position, IMAGE_SIZE_ARCSEC, "counts/s")
        hdulist.writeto(directory / f"map{map_index}.fits")
        header = hdulist[0].header
        rows.append({"name": f"cluster_{map_index}", "images": f"map{map_index}.fits", "ra_deg": f"{centre.ra.deg:.6f}",
                     "dec_deg": f"{centre.dec.deg:.6f}", "ebv": "0", "zeropoint_vega": f"{header['ZPVEGA']}",
                     "background": f"{sky_in_data_units(header):.9g}", "psf_fwhm_arcsec": "2.5"})
    rows.insert(2, dict(rows[0], name="broken", images="missing_image.fits"))
    return write_catalogue(directory / "clusters.csv", rows)


@pytest.fixture(scope="module")
def model():
    return open_model(piDOC_observation.default_trained_directory(), PROJECT_ROOT / "input_files" / "standardization_files")


def test_catalogue_answers_every_good_row_refuses_the_broken_one_and_is_the_same_on_two_workers(catalogue_of_five, model, tmp_path):
    one_worker = piDOC_observation.main(["--catalogue", str(catalogue_of_five), "--workers", "1",
                                         "--output-directory", str(tmp_path / "one")])["rows"]
    two_workers = piDOC_observation.run_catalogue(catalogue_of_five, tmp_path / "two", model, workers=2, make_figures=False)
    assert [row["status"] for row in one_worker] == ["answered", "answered", "refused", "answered", "answered"]
    refused = one_worker[2]
    assert refused["name"] == "broken" and "missing_image.fits: image file not found" in refused["reason"]
    for name in (catalogue.CATALOGUE_CSV_FILE, catalogue.CATALOGUE_TEXT_FILE):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    text = (tmp_path / "one" / catalogue.CATALOGUE_TEXT_FILE).read_text(encoding="utf-8")
    print(text)
    assert "4 of 5 clusters answered, 1 refused." in text and "nan" not in text.lower().split()
    assert [row["name"] for row in two_workers] == [row["name"] for row in one_worker]
    for row in one_worker:
        folder = tmp_path / "one" / row["name"]
        if row["status"] == "answered":
            assert {path.name for path in folder.iterdir()} == SINGLE_RUN_FILES
            assert np.isfinite(row["distance_kpc"]) and row["sky"].startswith("user value")
        else:
            assert not folder.exists()
    # A catalogue cluster's input map is the one a single run makes of the same image, byte for byte.
    first = catalogue.read_catalogue(catalogue_of_five)[0].settings
    single = observations.image_to_pidoc_map(first["paths"][0], ra_deg=first["ra_deg"], dec_deg=first["dec_deg"],
                                             zeropoint_vega=first["zeropoint_vega"], psf_fwhm_arcsec=first["psf_fwhm_arcsec"],
                                             background=first["background"], verbose=False)
    assert np.load(tmp_path / "one" / "cluster_48" / "piDOC_input_map.npy").tobytes() == \
        single["log_flux_map"].reshape(1, 160, 160, 1).tobytes()


def test_bad_rows_are_refused_with_their_reason_and_the_others_are_kept(catalogue_of_five, model, tmp_path):
    """Bad values, unsafe or repeated names, a missing file and a sky nothing decides: each row alone."""
    with open(catalogue_of_five, encoding="utf-8") as handle:
        good = next(csv.DictReader(handle))
    directory = catalogue_of_five.parent
    good["images"] = str(directory / good["images"])
    # A 6″ cutout of a cluster's core holds no sky and no edge of the cluster: the sky is undetermined.
    core = observations.synthetic_image_from_map(np.load(TEST_MAPS, mmap_mode="r")[48, ..., 0].astype(np.float64),
                                                 centre_of(0), PIXEL_SCALE_ARCSEC, 0.0, 6.0, "counts/s")
    core.writeto(tmp_path / "core.fits")
    rows = [
        dict(good, name="bad_ebv", ebv="abc"),
        dict(good, name="negative_ebv", ebv="-0.1"),
        dict(good, name="../escape"),
        dict(good, name="no_dec", dec_deg=""),
        dict(good, name="missing", images=str(directory / "nowhere.fits")),
        dict(good, name="core_only", images=str(tmp_path / "core.fits"), background=""),
        dict(good, name="cluster_48"),
        dict(good, name="CLUSTER_48"),
    ]
    path = write_catalogue(tmp_path / "bad.csv", rows)
    output_directory = tmp_path / "outputs"
    table = piDOC_observation.run_catalogue(path, output_directory, model, workers=1, make_figures=False)
    reasons = {row["name"]: row["reason"] for row in table}
    statuses = {row["name"]: row["status"] for row in table}
    print("\n".join(f"{name}: {reason}" for name, reason in reasons.items()))
    assert "ebv = 'abc' is not a number" in reasons["bad_ebv"]
    assert "ebv = '-0.1' is outside" in reasons["negative_ebv"]
    assert "cannot be a folder name" in reasons["../escape"]
    assert "give both ra_deg and dec_deg" in reasons["no_dec"]
    assert "nowhere.fits: image file not found" in reasons["missing"]
    assert "core.fits" in reasons["core_only"] and "--background" in reasons["core_only"]
    assert "that of row 7 too" in reasons["CLUSTER_48"]
    assert [name for name, status in statuses.items() if status == "answered"] == ["cluster_48"]
    assert sorted(path.name for path in output_directory.iterdir()) == sorted(
        ["cluster_48", catalogue.CATALOGUE_CSV_FILE, catalogue.CATALOGUE_TEXT_FILE])


def test_a_catalogue_that_cannot_be_read_is_refused_before_anything_is_written(tmp_path):
    output_directory = tmp_path / "outputs"
    output_directory.mkdir()
    (output_directory / catalogue.CATALOGUE_CSV_FILE).write_text("earlier table\n")
    missing_column = tmp_path / "missing_column.csv"
    missing_column.write_text("name,images,ra_deg,dec_deg\nngc,a.fits,1,2\n")
    misspelt = tmp_path / "misspelt.csv"
    misspelt.write_text("name,images,ra_deg,dec_deg,ebv,bakground\nngc,a.fits,1,2,0,3\n")
    for path, message in ((missing_column, "missing column\\(s\\) ebv"), (misspelt, "unknown column\\(s\\) bakground"),
                          (tmp_path / "absent.csv", "catalogue file not found")):
        with pytest.raises(ValueError, match=message) as raised:
            piDOC_observation.main(["--catalogue", str(path), "--output-directory", str(output_directory)])
        assert path.name in str(raised.value)
        assert (output_directory / catalogue.CATALOGUE_CSV_FILE).read_text() == "earlier table\n"
        assert sorted(item.name for item in output_directory.iterdir()) == [catalogue.CATALOGUE_CSV_FILE]
