"""Build ``countries.json`` from maintained packages (run by hand; the JSON is the checked-in output).

Why a build script: the runtime must not need extra packages, yet country names, UN M49 regions and
country groups must come from maintained data rather than from hand-typed lists (DOMAIN.md §5). So
this script reads the packages once, cross-checks them against each other and writes a plain JSON file
that ``ssmatch.reference`` loads. Re-run it when a package or ``country_groups.csv`` changes::

    pip install pycountry hdx-python-country worldcountrygroups country_converter
    python -m ssmatch.reference.build_countries            # writes countries.json, prints cross-checks
    python -m ssmatch.reference.build_countries --check    # exit 1 if countries.json is out of date

Sources (each one maintained and versioned on PyPI):

* ``pycountry``: the ISO 3166-1 list itself (every alpha-3 code, numeric code, fallback English name).
* ``hdx-python-country`` (UN OCHA HDX "Countries & Territories Taxonomy"): UN M49 region, sub-region and
  intermediate region, and UN terminology names in the six UN languages.
* ``country_groups.csv`` (checked in beside this file, with source and date): LDC, LLDC and SIDS
  membership from the UN-OHRLLS / UN DESA lists. country_converter ships no such columns; the
  ``worldcountrygroups`` package does, and is used to cross-check them.
* ``worldcountrygroups``: membership of the Group of 77 and China, and UNCTAD's "developing economies".
* ``country_converter``: cross-check of the M49 sub-regions and ISO3 lookup of members listed by name only.

The ``global_south`` rule (written into the JSON as ``global_south_rule``):

1. A country that is a member of the Group of 77 and China, or that UNCTAD classifies as a developing
   economy, is Global South. Both lists cover UN members and observer States only (this is how Moldova
   and North Macedonia, European LLDCs, are in).
2. Any entry also is when UNCTAD's regional rule over UN M49 says so: Africa, Latin America and the
   Caribbean, Asia and Oceania are developing, except Israel, Japan, the Republic of Korea, Cyprus and the
   "Australia and New Zealand" sub-region. This covers what the lists leave out: territories (Hong Kong,
   Puerto Rico, New Caledonia), States outside the UN (Cook Islands, Niue) and list gaps (the package's
   UNCTAD list misses DR Congo).
3. Everything else is not Global South: Europe, Northern America (so Greenland and Bermuda), Israel,
   Japan, Korea, Cyprus, Australia, New Zealand; Antarctica has no M49 region.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "countries.json"
GROUPS_CSV = HERE / "country_groups.csv"
HDX_FILE = "Countries & Territories Taxonomy MVP - C&T Taxonomy.csv"
LANGS = {"fr": "French", "es": "Spanish", "ru": "Russian", "zh": "Chinese", "ar": "Arabic"}
# UNCTAD's regional rule names these developed economies inside otherwise developing regions.
DEVELOPED_IN_SOUTH_REGIONS = frozenset({"ISR", "JPN", "KOR", "CYP"})
SOUTH_REGIONS = frozenset({"Africa", "Asia", "Oceania"})
GLOBAL_SOUTH_RULE = (
    "global_south is true for members of the Group of 77 and China and for UNCTAD developing economies "
    "(lists from the worldcountrygroups package), and for any entry that UNCTAD's regional rule over "
    "UN M49 makes developing (Africa, Latin America and the Caribbean, Asia and Oceania, "
    "except Israel, Japan, Republic of Korea, Cyprus and the Australia and New Zealand sub-region); "
    "every other entry is false."
)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def read_groups(path: Path = GROUPS_CSV) -> dict[str, set[str]]:
    """Map ISO3 -> groups from the checked-in CSV (comment lines start with '#')."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    out: dict[str, set[str]] = {}
    for row in csv.DictReader(lines):
        out.setdefault(row["iso3"].strip(), set()).add(row["group"].strip())
    return out


def _hdx_rows() -> dict[str, dict[str, str]]:
    path = resources.files("hdx.location").joinpath(HDX_FILE)
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {r["ISO 3166-1 Alpha 3-Codes"]: r for r in rows if r["ISO 3166-1 Alpha 3-Codes"]}


def _wcg_group(gid: str) -> set[str]:
    """ISO3 members of a worldcountrygroups group; members listed without a code are resolved by name."""
    import country_converter as coco  # build-time only

    data = json.loads(resources.files("worldcountrygroups").joinpath(f"data/groups/{gid}.json").read_text("utf-8"))
    codes: set[str] = set()
    for member in data["countries"]:
        code = member.get("iso3") or ""
        if not code:
            found = coco.convert(member["name"], to="ISO3", not_found=None)
            if isinstance(found, str) and len(found) == 3:
                code = found
            else:
                print(f"  note: worldcountrygroups {gid}: no ISO3 for {member['name']!r} (obsolete entity), skipped")
                continue
        codes.add(code)
    return codes


def _regional_rule(region: str | None, subregion: str | None, code: str) -> bool:
    if code in DEVELOPED_IN_SOUTH_REGIONS or subregion == "Australia and New Zealand":
        return False
    return region in SOUTH_REGIONS or subregion == "Latin America and the Caribbean"


def build() -> dict[str, Any]:
    """Assemble the countries document and print every disagreement between sources."""
    import pycountry  # build-time only

    hdx = _hdx_rows()
    groups = read_groups()
    g77 = _wcg_group("g77")
    developing = _wcg_group("developing")
    iso = {c.alpha_3: c for c in pycountry.countries}

    unknown = sorted(set(groups) - set(iso))
    if unknown:
        raise SystemExit(f"country_groups.csv names codes that are not ISO 3166-1 alpha-3: {unknown}")

    countries: list[dict[str, Any]] = []
    for code in sorted(iso):
        c = iso[code]
        row = hdx.get(code, {})
        region = row.get("Region Name") or None
        subregion = row.get("Sub-region Name") or None
        independent = row.get("Independent") == "Y"
        south = code in g77 or code in developing or _regional_rule(region, subregion, code)
        names = {"en": row.get("Preferred Term") or c.name}
        for lang, column in LANGS.items():
            value = row.get(f"{column} Short") or row.get(f"M49 {column}")
            if value:
                names[lang] = value
        member = groups.get(code, set())
        countries.append(
            {
                "code": code,
                "iso2": c.alpha_2,
                "m49": int(c.numeric),
                "name": names["en"],
                "names": names,
                "region": region,
                "subregion": subregion,
                "intermediate_region": row.get("Intermediate Region Name") or None,
                "independent": independent,
                "ldc": "LDC" in member,
                "lldc": "LLDC" in member,
                "sids": "SIDS" in member,
                "global_south": south,
            }
        )
    _cross_check(countries, groups, developing)
    return {
        "generated_by": "python -m ssmatch.reference.build_countries",
        "sources": {
            "iso3166": f"pycountry {_version('pycountry')}",
            "m49_regions_and_names": f"hdx-python-country {_version('hdx-python-country')} ({HDX_FILE})",
            "ldc_lldc_sids": "country_groups.csv (UN-OHRLLS / UN DESA lists as of 2024-12-13)",
            "g77_and_unctad_developing": f"worldcountrygroups {_version('worldcountrygroups')} (g77, developing)",
            "cross_check": f"country_converter {_version('country_converter')}",
        },
        "global_south_rule": GLOBAL_SOUTH_RULE,
        "countries": countries,
    }


def _cross_check(countries: list[dict[str, Any]], groups: dict[str, set[str]], developing: set[str]) -> None:
    """Report (not fail on) disagreements, so a reviewer sees where the sources part ways."""
    import country_converter as coco  # build-time only

    for gid, group in (("ldcs", "LDC"), ("lldcs", "LLDC"), ("sids", "SIDS")):
        ours = {c for c, g in groups.items() if group in g}
        theirs = _wcg_group(gid)
        if ours != theirs:
            print(f"  cross-check {group}: only in country_groups.csv {sorted(ours - theirs)}; "
                  f"only in worldcountrygroups {sorted(theirs - ours)}")
    cc = coco.CountryConverter()
    mismatched = []
    for c in countries:
        if c["region"] is None:
            continue
        theirs = cc.convert(c["code"], src="ISO3", to="UNregion", not_found=None)
        if theirs not in (c["subregion"], c["intermediate_region"]):
            mismatched.append(f"{c['code']}: hdx {c['subregion']}/{c['intermediate_region']} vs coco {theirs}")
    if mismatched:
        print(f"  cross-check M49 sub-regions (hdx vs country_converter), {len(mismatched)} differ: {mismatched}")
    by_rule = {c["code"] for c in countries if c["independent"] and _regional_rule(c["region"], c["subregion"], c["code"])}
    print(f"  cross-check UNCTAD list vs regional rule on States: only in list {sorted(developing - by_rule)}; "
          f"only by rule {sorted(by_rule - developing)}")
    south = sum(c["global_south"] for c in countries)
    print(f"  {len(countries)} countries; global_south {south}; "
          f"LDC {sum(c['ldc'] for c in countries)}, LLDC {sum(c['lldc'] for c in countries)}, SIDS {sum(c['sids'] for c in countries)}")


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if countries.json differs from a fresh build")
    args = parser.parse_args(argv)
    text = render(build())
    if args.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print("countries.json is up to date" if same else "countries.json is OUT OF DATE: re-run without --check")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
