"""Many clusters at once: a catalogue of images → π-DOC's input maps, on dask workers, and one table.

`piDOC_observation.py --catalogue clusters.csv` reads one row per cluster (`read_catalogue`), turns
every row's image(s) into π-DOC's input map on dask.distributed workers (`prepare_clusters`: numpy,
scipy, astropy and reproject only, no TensorFlow), and the driver then runs π-DOC once, in the
client, on the stacked maps. A row that cannot be done (a missing file, a bad value, a sky nothing
decides, …) is refused with its reason and the others go on. The catalogue table
(`write_catalogue_table`) is sorted by catalogue order and formatted with fixed precision, so it is
the same byte for byte whatever the number of workers or the order in which they finish.

Why the networks run in the client: TensorFlow takes seconds and about 1 GB to start in each process
and both networks together take a few hundred MB; the image → map step is numpy work of a few seconds
per image that parallelises well. So workers do the images and the client does π-DOC in one batch
(maps are 100 kB each, so even thousands of them fit in memory).

The catalogue (CSV, a header row, one row per cluster; `#` starts a comment line):

| column | required | meaning |
|---|---|---|
| name | yes | the cluster's name, used for its output folder `<output>/<name>/` |
| images | yes | image path(s), `;`-separated; relative paths are relative to the catalogue's folder |
| ra_deg, dec_deg | yes (may be empty together) | centre, ICRS degrees; empty: the light-weighted centre of the first image |
| ebv | yes | E(B−V) in mag (0 where negligible) |
| zeropoint_vega, background, psf_fwhm_arcsec, units | no | as the driver's flags; one value, or one per image (`;`) |
| hdu | no | HDU index or EXTNAME, one or one per image (`;`), or `all` for every 2-D image HDU |
| background_region | no | `x0 x1 y0 y1` per image (`;` between images) |
| background_outside_arcsec | no | the pixels beyond this radius are sky (the user's statement) |
| psf_fwhm_relative_error | no | how well psf_fwhm_arcsec is known, e.g. 0.05 (default `observations.PSF_FWHM_RELATIVE_ERROR`) |
"""
import csv
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from pidoc import observations
from pidoc.io import check_flux_maps, save_text

REQUIRED_COLUMNS = ("name", "images", "ra_deg", "dec_deg", "ebv")
OPTIONAL_COLUMNS = ("zeropoint_vega", "background", "psf_fwhm_arcsec", "hdu", "units", "background_region",
                    "background_outside_arcsec", "psf_fwhm_relative_error")
LIST_SEPARATOR = ";"
ALL_HDUS = "all"
# A cluster's name becomes a folder name: letters, digits, spaces and _ . + - only, not starting with a
# dot or a space (no path separators, no hidden folders).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_+\-][A-Za-z0-9 _.+\-]*$")
MAXIMUM_NAME_LENGTH = 100

CATALOGUE_CSV_FILE = "catalogue_summary.csv"
CATALOGUE_TEXT_FILE = "catalogue_summary.txt"
ANSWERED = "answered"
REFUSED = "refused"
# The quantities of the table, with the digits of the text table (those of predictions_summary.txt).
TABLE_QUANTITIES = (("distance_kpc", 1, "D (kpc) [68 %]"), ("age_gyr", 1, "age (Gyr) [68 %]"),
                    ("log_total_mass_msun", 2, "log M_tot (M☉) [68 %]"), ("mass_to_light_v", 2, "M/L_V [68 %]"))


class CatalogueError(ValueError):
    """A catalogue that cannot be read at all (missing file or columns); a bad row is refused alone."""


@dataclass
class CatalogueEntry:
    """One row of the catalogue: its position, name, and either its settings or why it is refused."""

    index: int
    name: str
    settings: dict = field(default_factory=dict)
    reason: str = ""


# ==================================================================================================
# 1. Reading the catalogue
# ==================================================================================================
def split_list(text):
    """The `;`-separated items of a cell, stripped; [] for an empty cell."""
    text = (text or "").strip()
    return [item.strip() for item in text.split(LIST_SEPARATOR)] if text else []


def parse_number(text, column, minimum=None, maximum=None):
    """A finite float from a cell, within [minimum, maximum]; ValueError naming the column otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} = {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{column} = {text!r} is not a finite number")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"{minimum if minimum is not None else '−∞'} to {maximum if maximum is not None else '∞'}"
        raise ValueError(f"{column} = {text!r} is outside {bounds}")
    return value


def parse_numbers(text, column, minimum=None, maximum=None):
    """None for an empty cell, one float, or a list of floats (one per image)."""
    items = split_list(text)
    if not items:
        return None
    if any(item == "" for item in items):
        raise ValueError(f"{column} = {text!r} has an empty item")
    values = [parse_number(item, column, minimum, maximum) for item in items]
    return values[0] if len(values) == 1 else values


def parse_regions(text):
    """None, or one (x0, x1, y0, y1) box of integers per image."""
    items = split_list(text)
    if not items:
        return None
    boxes = []
    for item in items:
        bounds = item.replace(",", " ").split()
        if len(bounds) != 4:
            raise ValueError(f"background_region = {text!r}: each box is 'x0 x1 y0 y1' (four integers)")
        try:
            boxes.append(tuple(int(bound) for bound in bounds))
        except ValueError:
            raise ValueError(f"background_region = {text!r}: bounds must be integers (0-based pixels)") from None
    return boxes[0] if len(boxes) == 1 else boxes


def parse_row(row, catalogue_directory):
    """The settings of one catalogue row for `prepare_cluster`; ValueError with the reason otherwise."""
    image_texts = split_list(row.get("images"))
    if not image_texts or any(text == "" for text in image_texts):
        raise ValueError(f"images = {row.get('images')!r}: give one image path or several separated by '{LIST_SEPARATOR}'")
    paths = [Path(text) if Path(text).is_absolute() else catalogue_directory / text for text in image_texts]
    for path in paths:
        if not path.is_file():
            raise ValueError(f"{path}: image file not found")
    ra_text, dec_text = (row.get("ra_deg") or "").strip(), (row.get("dec_deg") or "").strip()
    if bool(ra_text) != bool(dec_text):
        raise ValueError("give both ra_deg and dec_deg, or leave both empty (light-weighted centre)")
    ebv_text = (row.get("ebv") or "").strip()
    if not ebv_text:
        raise ValueError("ebv is empty: give E(B−V) in mag (0 where negligible)")
    hdus = split_list(row.get("hdu"))
    all_hdus = [hdu.lower() for hdu in hdus] == [ALL_HDUS]
    units = split_list(row.get("units"))
    for unit in units:
        if unit not in observations.UNIT_CHOICES:
            raise ValueError(f"units = {unit!r}: expected one of {', '.join(observations.UNIT_CHOICES)}")
    outside_text = (row.get("background_outside_arcsec") or "").strip()
    psf_error_text = (row.get("psf_fwhm_relative_error") or "").strip()
    return {
        "paths": paths,
        "hdus": [] if all_hdus else hdus,
        "all_hdus": all_hdus,
        "ra_deg": parse_number(ra_text, "ra_deg", 0.0, 360.0) if ra_text else None,
        "dec_deg": parse_number(dec_text, "dec_deg", -90.0, 90.0) if dec_text else None,
        "ebv": parse_number(ebv_text, "ebv", 0.0),
        "zeropoint_vega": parse_numbers(row.get("zeropoint_vega"), "zeropoint_vega"),
        "background": parse_numbers(row.get("background"), "background"),
        "psf_fwhm_arcsec": parse_numbers(row.get("psf_fwhm_arcsec"), "psf_fwhm_arcsec", 0.0),
        "units": None if not units else (units[0] if len(units) == 1 else units),
        "background_region": parse_regions(row.get("background_region")),
        "background_outside_arcsec": parse_number(outside_text, "background_outside_arcsec", 0.0) if outside_text else None,
        "psf_fwhm_relative_error": (parse_number(psf_error_text, "psf_fwhm_relative_error", 0.0, 0.5) if psf_error_text
                                    else observations.PSF_FWHM_RELATIVE_ERROR),
    }


def read_catalogue(catalogue_path):
    """Read a catalogue CSV: one `CatalogueEntry` per row, in order; bad rows carry their reason.

    Raises
    ------
    CatalogueError
        When the file is missing, empty, lacks a required column or has an unknown one (a misspelt
        setting would otherwise be ignored silently). Nothing is written before this check.
    """
    catalogue_path = Path(catalogue_path)
    if not catalogue_path.is_file():
        raise CatalogueError(f"{catalogue_path}: catalogue file not found")
    with open(catalogue_path, newline="", encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    columns = [column.strip() for column in (reader.fieldnames or [])]
    reader.fieldnames = columns
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise CatalogueError(f"{catalogue_path}: missing column(s) {', '.join(missing)}; the catalogue needs "
                             f"{', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)})")
    unknown = [column for column in columns if column not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise CatalogueError(f"{catalogue_path}: unknown column(s) {', '.join(unknown)}; known: "
                             f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}")
    entries, first_row_of_name = [], {}
    for index, row in enumerate(reader):
        if None in row:
            entries.append(CatalogueEntry(index, (row.get("name") or "").strip() or f"row {index + 1}",
                                          reason=f"row {index + 1} has more cells than the header has columns"))
            continue
        name = (row.get("name") or "").strip()
        entry = CatalogueEntry(index, name or f"row {index + 1}")
        if not name:
            entry.reason = "name is empty"
        elif len(name) > MAXIMUM_NAME_LENGTH or not NAME_PATTERN.match(name) or name.endswith((" ", ".")):
            entry.reason = (f"name {name!r} cannot be a folder name: use letters, digits, spaces and _ . + - "
                            f"(at most {MAXIMUM_NAME_LENGTH} characters, not ending in a space or a dot)")
        elif name.lower() in first_row_of_name:
            entry.reason = f"name {name!r} is that of row {first_row_of_name[name.lower()] + 1} too"
        else:
            first_row_of_name[name.lower()] = index
            try:
                entry.settings = parse_row(row, catalogue_path.parent)
            except ValueError as error:
                entry.reason = str(error)
        entries.append(entry)
    if not entries:
        raise CatalogueError(f"{catalogue_path}: the catalogue has no row")
    return entries


# ==================================================================================================
# 2. Images → maps, on the workers
# ==================================================================================================
def sources_of(settings):
    """The (path, hdu) images of a row: its paths, with `hdus` (one for all, one per path, or several
    HDUs of one file) or every 2-D image HDU of each file."""
    return observations.expand_sources(settings["paths"], settings["hdus"] or None, settings["all_hdus"])


def prepare_cluster(entry):
    """Image(s) → π-DOC's input map for one catalogue entry; never raises for a bad input.

    Runs on a dask worker (numpy, astropy, reproject; no TensorFlow). The heavy image cutout of the
    result is replaced by the small display image of the figure, so that only ~1 MB travels back.

    Returns
    -------
    dict
        "index", "name", "status" (`ANSWERED` once the map is made, else `REFUSED`), "reason" (why it
        is refused; "" otherwise), "result" (`images_to_pidoc_map`'s, slimmed; None when refused).
    """
    outcome = {"index": entry.index, "name": entry.name, "status": REFUSED, "reason": entry.reason, "result": None}
    if entry.reason:
        return outcome
    settings = entry.settings
    try:
        result = observations.images_to_pidoc_map(
            sources_of(settings), ra_deg=settings["ra_deg"], dec_deg=settings["dec_deg"], ebv=settings["ebv"],
            zeropoint_vega=settings["zeropoint_vega"], psf_fwhm_arcsec=settings["psf_fwhm_arcsec"],
            background=settings["background"], background_region=settings["background_region"],
            background_outside_arcsec=settings["background_outside_arcsec"], units=settings["units"], verbose=False,
            psf_fwhm_relative_error=settings["psf_fwhm_relative_error"])
        check_flux_maps(result["log_flux_map"])
    except (ValueError, OSError) as error:
        # ValueError: ObservationError, SkyUndeterminedError and bad maps; OSError: unreadable files.
        outcome["reason"] = str(error)
        return outcome
    except Exception as error:  # noqa: BLE001 - one broken row must not stop a catalogue; the reason says what broke
        outcome["reason"] = f"unexpected error ({type(error).__name__}: {error})"
        return outcome
    result["display"] = observations.display_cutout(result)
    del result["cutout"]
    outcome.update(status=ANSWERED, result=result)
    return outcome


def prepare_clusters(entries, workers=1, scheduler=None):
    """`prepare_cluster` for every entry, in catalogue order, here or on dask.distributed workers.

    With one worker and no scheduler the rows run here, one after the other; otherwise on the
    workers of `scheduler` (an address, e.g. of a dask-jobqueue cluster; its workers need this
    project on their Python path and the images on a shared file system) or of a LocalCluster of
    `workers` single-threaded processes (numpy and reproject hold the GIL much of the time, so
    processes, not threads), as `make_mock_clusters.py` does. Results are sorted by catalogue order,
    so the outcome does not depend on which worker finishes first.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if workers == 1 and scheduler is None:
        return [prepare_cluster(entry) for entry in entries]
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        # No dashboard, and its HTTP server on a free port: a fixed port (8787) may be taken by another
        # cluster on the machine (distributed warns, then moves).
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                               scheduler_kwargs={"dashboard": False}, silence_logs=logging.ERROR)
    client = Client(scheduler or cluster)
    try:
        # The task function comes from this importable module, so the workers import it themselves.
        futures = client.map(prepare_cluster, entries, pure=False)
        outcomes = []
        for future in as_completed(futures):
            outcomes.append(future.result())
            future.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return sorted(outcomes, key=lambda outcome: outcome["index"])


# ==================================================================================================
# 3. The catalogue table
# ==================================================================================================
def sky_summary(result):
    """One short phrase per image: how its sky was set and how sure it is."""
    phrases = []
    for source in result["sources"]:
        sky = source["sky"]
        certainty = f" ± {sky['uncertainty_text']}" if sky["uncertainty_flux_per_pixel"] > 0 else ""
        phrases.append(f"{sky['method']} {sky['value_text']}{certainty}")
    return "; ".join(phrases)


def catalogue_rows(outcomes, summary_rows):
    """Rows of the catalogue table, in catalogue order.

    Parameters
    ----------
    outcomes : list of dict
        `prepare_clusters`' outcomes, in catalogue order.
    summary_rows : dict
        Catalogue index → `uncertainty.summarize`'s row, for the answered entries.
    """
    from pidoc.calibration import uncertainty

    rows = []
    for outcome in outcomes:
        row = {"name": outcome["name"], "status": outcome["status"]}
        summary = summary_rows.get(outcome["index"])
        for column, _, _ in TABLE_QUANTITIES:
            for suffix in ("", "_lo68", "_hi68"):
                row[column + suffix] = summary[column + suffix] if summary is not None else math.nan
        row["domain"] = summary["domain"] if summary is not None else ""
        row["domain_reason"] = summary["domain_reason"] if summary is not None else ""
        result = outcome["result"]
        row["coverage_percent"] = 100.0 * result["covered_fraction"] if result is not None else math.nan
        # The map's 1σ noise per 0.25″ pixel (mag arcsec⁻²; empty when none was measurable).
        noise = result.get("noise_surface_brightness_mag_arcsec2") if result is not None else None
        row["noise_mag_arcsec2"] = float(noise) if noise is not None else math.nan
        row["sky"] = sky_summary(result) if result is not None else ""
        if summary is not None:
            reasons = {name: reason for name, reason in uncertainty.undefined_value_reasons(summary).items()
                       if name in row}
            row["reason"] = uncertainty.undefined_reason_text(reasons)
        else:
            row["reason"] = outcome["reason"]
        rows.append(row)
    return rows


def csv_cell(value):
    """Six significant digits for a number; an undefined one as an empty field (its reason is in `reason`)."""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return value


def text_cell(row, column, digits):
    """'16.0 [9.8, 16.0]', or words where the value or its interval is undefined (never `nan`)."""
    from pidoc.calibration import uncertainty

    if row["status"] != ANSWERED:
        return "refused"
    point, low, high = row[column], row[column + "_lo68"], row[column + "_hi68"]
    # A distance ≤ 0 has no log10 D (so no distance interval) and no luminosity L = 4π D² F (so no M/L_V).
    distance_not_positive = uncertainty.is_defined(row["distance_kpc"]) and row["distance_kpc"] <= 0
    through_distance = distance_not_positive and column in ("distance_kpc", "mass_to_light_v")
    if not uncertainty.is_defined(point):
        return "undefined (D ≤ 0)" if through_distance else "undefined (not finite)"
    if not (uncertainty.is_defined(low) and uncertainty.is_defined(high)):
        calibrated = any(uncertainty.is_defined(row[name + "_lo68"]) for name, _, _ in TABLE_QUANTITIES)
        why = "D ≤ 0" if through_distance else ("not finite" if calibrated else "not calibrated")
        return f"{point:.{digits}f} [undefined: {why}]"
    mark = f" {uncertainty.OUTSIDE_MARK}" if uncertainty.point_outside_interval(point, low, high) else ""
    return f"{point:.{digits}f}{mark} [{low:.{digits}f}, {high:.{digits}f}]"


def catalogue_csv_text(rows):
    """The CSV of the catalogue table: one line per catalogue row, fixed precision."""
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: csv_cell(value) for key, value in row.items()})
    return buffer.getvalue()


def catalogue_text(rows):
    """The `tabulate` table: name, status, the four quantities with 68 % intervals, verdict, reason."""
    table = []
    for row in rows:
        reason = row["domain_reason"] if row["status"] == ANSWERED else row["reason"]
        if row["status"] == ANSWERED and row["reason"]:
            reason = "; ".join(part for part in (reason, row["reason"]) if part)
        table.append([row["name"], row["status"]] + [text_cell(row, column, digits) for column, digits, _ in TABLE_QUANTITIES]
                     + [row["domain"] or "-", reason])
    headers = ["name", "status"] + [header for _, _, header in TABLE_QUANTITIES] + ["domain", "reason"]
    answered = sum(row["status"] == ANSWERED for row in rows)
    return (tabulate(table, headers=headers, disable_numparse=True) + "\n"
            + f"\n{answered} of {len(rows)} clusters answered, {len(rows) - answered} refused.\n")


def write_catalogue_table(output_directory, rows):
    """Write `catalogue_summary.csv` and `catalogue_summary.txt` (each to a temporary name, then renamed)."""
    if not rows:
        raise ValueError("no catalogue rows to write")
    csv_text, text = catalogue_csv_text(rows), catalogue_text(rows)
    output_directory = Path(output_directory)
    output_directory.mkdir(parents=True, exist_ok=True)
    return [save_text(output_directory / CATALOGUE_CSV_FILE, csv_text), save_text(output_directory / CATALOGUE_TEXT_FILE, text)]
