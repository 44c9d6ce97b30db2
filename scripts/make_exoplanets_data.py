"""Write src/sqltune/data/exoplanets/{train,valid,test}.jsonl from the items below, then check them.

    .venv/bin/python scripts/make_exoplanets_data.py           # write + `data check` all three
    .venv/bin/python scripts/make_exoplanets_data.py --strict  # also flag ties broken only by `name`

House style of the gold SQL (the model learns it): upper-case keywords, one clause per line, no
trailing semicolon; `e` / `r` aliases only when exoplanets is joined to reference_planets
(`JOIN reference_planets r ON e.mass_wrt = r.name`); mass in kg is `e.mass_multiplier * r.mass`,
in Earth (Jupiter) masses divided by `(SELECT mass FROM reference_planets WHERE name = 'Earth')`;
orbital_period is in years (days: `* 365.25`); ORDER BY only when the question asks for an order or
a top-k, and then with a tie-breaker (`, name`) so the cut and the order are deterministic;
`IS NOT NULL` when sorting ascending on a nullable column (NULLs sort first in SQLite).

Difficulty tags (E/M/H) are kept here only, to give `test` the mix of `valid` (2 E, 4 M, 4 H).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sqltune.dataset import write_jsonl  # noqa: E402

OUT = ROOT / "src" / "sqltune" / "data" / "exoplanets"
# the recovered original pairs (see that folder's PROVENANCE.md); override with $SQLTUNE_SEED
SEED = Path(os.environ.get("SQLTUNE_SEED", "/work/shared/data/seed/exoplanets_sql_recovered.jsonl"))
EARTH = "(SELECT mass FROM reference_planets WHERE name = 'Earth')"
JUPITER = "(SELECT mass FROM reference_planets WHERE name = 'Jupiter')"
RECOVERED = ("Recovered from the original project's training data (github.com/dapopov-st/sql-finetune, "
             "{src}); SQL restyled, same result.")
# recovered pairs whose original SQL was wrong and is corrected here (the result differs on purpose)
CORRECTED = {"Identify the exoplanets with the lowest radius multipliers, showing their names and calculated "
             "radius for each discovery year."}  # compared radius_multiplier across Earth and Jupiter units


def sql(text: str) -> str:
    lines = text.strip("\n").splitlines()
    indent = min(len(l) - len(l.lstrip()) for l in lines if l.strip())
    return "\n".join(l[indent:].rstrip() for l in lines).replace("{EARTH}", EARTH).replace("{JUPITER}", JUPITER)


# ------------------------------------------------------------------------------------------- valid
def valid_items() -> list[dict]:
    rows = [json.loads(l) for l in SEED.read_text(encoding="utf-8").splitlines() if l.strip()]
    rows = sorted((r for r in rows if r["split"] == "valid"), key=lambda r: r["valid_index"])
    assert len(rows) == 10
    items = []
    for r in rows:
        item = {"id": f"valid-{r['valid_index'] + 1:02d}", "question": r["question"], "sql": r["sql"].strip()}
        if r["valid_index"] == 3:
            item["notes"] = ("Valid #3 (0-based) of the original: the author's corrected SQL (RANK within each "
                             "year); the original gold, which did not rank within each year, is superseded.")
        if r["valid_index"] == 7:
            item["sql"] = sql("""
                SELECT name, discovery_year, detection_method
                FROM exoplanets
                WHERE discovery_year >= (SELECT MAX(discovery_year) FROM exoplanets) - 1
                ORDER BY discovery_year DESC, name""")
            item["notes"] = ("Valid #7 (0-based) of the original, changed: it used strftime('%Y', 'now') - 2 and so depended on "
                             "today's date: 'the last two years' now means the latest discovery_year in the table "
                             "and the one before (2022-2023), which reproduces the original's stored result "
                             "(computed in Oct 2024, years >= 2022). Tie-breaker `name` added to the ORDER BY.")
        items.append(item)
    return items


# ------------------------------------------------------------------------------------------- train
def recovered_train() -> list[tuple]:
    """The recovered training pairs kept for train, restyled (results checked equal in main())."""
    src = {
        "rank_mass": "exo_to_sql_extra.ipynb sheet row 0",
        "moving": "exo_to_sql_extra.ipynb sheet row 1",
        "methods": "exo_to_sql_extra.ipynb sheet row 3",
        "cumulative": "exo_to_sql_extra.ipynb sheet row 4",
        "avg_mass": "dpv/exoplanets-sql train, via Fine_tune_llama3.ipynb",
        "ecc_year": "dpv/exoplanets-sql2 train, via Fine_tune_llama3_dora_extra10.ipynb",
        "extra": "dpv/exoplanets-sql2 extra examples, via exo_to_sql_extra.ipynb",
    }
    R = lambda k, extra="": RECOVERED.format(src=src[k]) + extra  # noqa: E731
    return [
        ("H", "Rank exoplanets based on their mass within each discovery year and return the top 3 planets with the highest mass.", sql("""
            WITH ranked AS (
                SELECT e.name, e.mass_multiplier * r.mass AS mass, e.discovery_year,
                       RANK() OVER (PARTITION BY e.discovery_year ORDER BY e.mass_multiplier * r.mass DESC) AS mass_rank
                FROM exoplanets e
                JOIN reference_planets r ON e.mass_wrt = r.name
            )
            SELECT name, mass, discovery_year, mass_rank
            FROM ranked
            WHERE mass_rank <= 3"""), R("rank_mass")),
        ("H", "Calculate a moving average of the number of exoplanets discovered over a 5-year period.", sql("""
            WITH yearly AS (
                SELECT discovery_year, COUNT(*) AS num_discoveries
                FROM exoplanets
                GROUP BY discovery_year
            )
            SELECT discovery_year, num_discoveries,
                   AVG(num_discoveries) OVER (ORDER BY discovery_year ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS moving_avg
            FROM yearly
            ORDER BY discovery_year"""), R("moving")),
        ("M", "Get a count of unique exoplanets discovered using each method, along with the first discovery year, order by the number of unique exoplanets", sql("""
            SELECT detection_method, COUNT(DISTINCT name) AS unique_exoplanets, MIN(discovery_year) AS first_discovery_year
            FROM exoplanets
            GROUP BY detection_method
            ORDER BY unique_exoplanets DESC, detection_method"""), R("methods", " Tie-breaker detection_method added (Astrometry and Pulsation Timing Variations both have 2).")),
        ("H", "Determine the cumulative number of exoplanets discovered over the years.", sql("""
            WITH yearly AS (
                SELECT discovery_year, COUNT(*) AS num_discoveries
                FROM exoplanets
                GROUP BY discovery_year
            )
            SELECT discovery_year, num_discoveries,
                   SUM(num_discoveries) OVER (ORDER BY discovery_year) AS cumulative_count
            FROM yearly
            ORDER BY discovery_year"""), R("cumulative")),
        ("M", "What is the average mass of exoplanets discovered each year?", sql("""
            SELECT e.discovery_year, AVG(e.mass_multiplier * r.mass) AS average_mass
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            GROUP BY e.discovery_year
            ORDER BY e.discovery_year"""), R("avg_mass", " Mass in kg.")),
        ("M", "Identify the discovery year with the highest average eccentricity of discovered exoplanets.", sql("""
            SELECT discovery_year, AVG(eccentricity) AS avg_eccentricity
            FROM exoplanets
            GROUP BY discovery_year
            ORDER BY avg_eccentricity DESC, discovery_year
            LIMIT 1"""), R("ecc_year")),
        ("H", "Identify the exoplanets with the lowest radius multipliers, showing their names and calculated radius for each discovery year.", sql("""
            WITH radii AS (
                SELECT discovery_year, name,
                       CASE radius_wrt WHEN 'Jupiter' THEN radius_multiplier * 11.2 WHEN 'Earth' THEN radius_multiplier END AS radius_earths
                FROM exoplanets
            ),
            min_radius AS (
                SELECT discovery_year, MIN(radius_earths) AS min_radius
                FROM radii
                GROUP BY discovery_year
            )
            SELECT p.discovery_year, p.name, p.radius_earths
            FROM radii p
            JOIN min_radius m ON p.discovery_year = m.discovery_year
            WHERE p.radius_earths = m.min_radius"""),
         RECOVERED.format(src=src["extra"]).replace("; SQL restyled, same result.", "")
         + "; the original compared radius_multiplier across units (Earth and Jupiter radii), here radii are "
           "converted to Earth radii by radius_wrt (Jupiter's radius is about 11.2 Earth radii)."),
        ("E", "List exoplanets discovered in 2010 with an eccentricity less than 0.3.", sql("""
            SELECT name, discovery_year, eccentricity
            FROM exoplanets
            WHERE discovery_year = 2010 AND eccentricity < 0.3"""), R("extra")),
        ("E", "Identify the exoplanets with eccentricity greater than 0.5, showing their names and discovery years.", sql("""
            SELECT name, discovery_year
            FROM exoplanets
            WHERE eccentricity > 0.5"""), R("extra")),
        ("E", "Find the average orbital radius of exoplanets discovered in 2005.", sql("""
            SELECT AVG(orbital_radius) AS avg_radius
            FROM exoplanets
            WHERE discovery_year = 2005"""), R("extra")),
    ]


def train_items() -> list[tuple]:
    return recovered_train() + [
        # ---------------------------------------------------------------- filters and counts
        ("E", "How many exoplanets were discovered in 2016?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE discovery_year = 2016""")),
        ("E", "How many planets were found in 2009?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE discovery_year = 2009""")),
        ("E", "How many exoplanets are in the database?", sql("""
            SELECT COUNT(*)
            FROM exoplanets""")),
        ("E", "How many exoplanets were found with the transit method?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE detection_method = 'Transit'""")),
        ("E", "How many gas giants have been discovered?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE planet_type = 'Gas Giant'""")),
        ("E", "How many planets were discovered before 2000?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE discovery_year < 2000""")),
        ("E", "How many super-Earths were discovered in 2021?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE planet_type = 'Super Earth' AND discovery_year = 2021""")),
        ("E", "How many Neptune-like planets turned up in 2018?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE planet_type = 'Neptune-like' AND discovery_year = 2018""")),
        ("E", "Which planets were discovered in 1995?", sql("""
            SELECT name
            FROM exoplanets
            WHERE discovery_year = 1995""")),
        ("E", "Which planets were found by direct imaging in 2008?", sql("""
            SELECT name
            FROM exoplanets
            WHERE detection_method = 'Direct Imaging' AND discovery_year = 2008""")),
        ("E", "Show me all the exoplanets within 20 light years of Earth.", sql("""
            SELECT name, distance
            FROM exoplanets
            WHERE distance < 20""")),
        ("E", "Which planets were discovered by astrometry, and when?", sql("""
            SELECT name, discovery_year
            FROM exoplanets
            WHERE detection_method = 'Astrometry'""")),
        ("E", "How many planets have a perfectly circular orbit?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE eccentricity = 0"""), "A circular orbit has eccentricity 0."),
        ("M", "Which planets go around their star in less than a day?", sql("""
            SELECT name, orbital_period * 365.25 AS period_days
            FROM exoplanets
            WHERE orbital_period * 365.25 < 1"""), "orbital_period is in years."),
        ("E", "Which planets take more than 1000 years to complete one orbit?", sql("""
            SELECT name, orbital_period
            FROM exoplanets
            WHERE orbital_period > 1000""")),
        ("E", "Find exoplanets with an eccentricity above 0.9.", sql("""
            SELECT name, eccentricity
            FROM exoplanets
            WHERE eccentricity > 0.9""")),
        ("E", "List the Neptune-like planets discovered in 2023.", sql("""
            SELECT name
            FROM exoplanets
            WHERE planet_type = 'Neptune-like' AND discovery_year = 2023""")),
        ("E", "How many planets were discovered between 2010 and 2015?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE discovery_year BETWEEN 2010 AND 2015"""), "Both years included."),
        ("E", "What detection methods have astronomers used to find exoplanets?", sql("""
            SELECT DISTINCT detection_method
            FROM exoplanets""")),
        ("E", "What kinds of planets are in the catalogue?", sql("""
            SELECT DISTINCT planet_type
            FROM exoplanets""")),
        ("E", "Which terrestrial planets are closer than 50 light years?", sql("""
            SELECT name, distance
            FROM exoplanets
            WHERE planet_type = 'Terrestrial' AND distance < 50""")),
        ("E", "How many planets orbit stars brighter than magnitude 6?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE stellar_magnitude < 6"""), "Lower magnitude is brighter."),
        ("E", "Which planets have a host star fainter than magnitude 20?", sql("""
            SELECT name, stellar_magnitude
            FROM exoplanets
            WHERE stellar_magnitude > 20""")),
        ("E", "How many planets were detected by radial velocity or by transit timing variations?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE detection_method IN ('Radial Velocity', 'Transit Timing Variations')""")),
        ("E", "Which planets have their mass given in Jupiter masses but their radius in Earth radii?", sql("""
            SELECT name
            FROM exoplanets
            WHERE mass_wrt = 'Jupiter' AND radius_wrt = 'Earth'""")),
        ("E", "Tell me everything about Proxima Centauri b.", sql("""
            SELECT *
            FROM exoplanets
            WHERE name = 'Proxima Centauri b'""")),
        ("E", "When was 51 Pegasi b discovered, and how?", sql("""
            SELECT discovery_year, detection_method
            FROM exoplanets
            WHERE name = '51 Pegasi b'""")),
        ("E", "How far away is TRAPPIST-1 e?", sql("""
            SELECT distance
            FROM exoplanets
            WHERE name = 'TRAPPIST-1 e'"""), "distance is in light years."),
        ("E", "Which planets were found by pulsar timing?", sql("""
            SELECT name, discovery_year
            FROM exoplanets
            WHERE detection_method = 'Pulsar Timing'""")),
        ("E", "Which gas giants discovered after 2020 have an eccentricity of at least 0.5?", sql("""
            SELECT name, discovery_year, eccentricity
            FROM exoplanets
            WHERE planet_type = 'Gas Giant' AND discovery_year > 2020 AND eccentricity >= 0.5""")),
        ("E", "Are there any planets closer than 10 light years that were found by transit?", sql("""
            SELECT name, distance
            FROM exoplanets
            WHERE detection_method = 'Transit' AND distance < 10"""),
            "Empty: no transiting planet is that close; the empty result is the answer."),
        ("E", "Which planets were found by disk kinematics or by pulsation timing variations?", sql("""
            SELECT name, detection_method
            FROM exoplanets
            WHERE detection_method IN ('Disk Kinematics', 'Pulsation Timing Variations')""")),
        ("E", "Which super-Earths orbit within 0.02 AU of their star?", sql("""
            SELECT name, orbital_radius
            FROM exoplanets
            WHERE planet_type = 'Super Earth' AND orbital_radius < 0.02""")),
        ("E", "How many planets sit between 1000 and 2000 light years away?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE distance BETWEEN 1000 AND 2000""")),
        # ---------------------------------------------------------------- planetary systems (name matching)
        ("E", "How many worlds did Kepler-11 host?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE name LIKE 'Kepler-11 %'"""), "A system's planets are named '<host> b', '<host> c', ..."),
        ("M", "List the planets of the TRAPPIST-1 system with their orbital periods in days, innermost first.", sql("""
            SELECT name, orbital_period * 365.25 AS period_days
            FROM exoplanets
            WHERE name LIKE 'TRAPPIST-1 %'
            ORDER BY orbital_period, name""")),
        ("E", "Which planets orbit 55 Cancri?", sql("""
            SELECT name
            FROM exoplanets
            WHERE name LIKE '55 Cancri %'""")),
        ("E", "What is the average orbital radius of the planets around HD 10180?", sql("""
            SELECT AVG(orbital_radius)
            FROM exoplanets
            WHERE name LIKE 'HD 10180 %'""")),
        ("M", "Which planet in the Kepler-20 system is farthest from its star?", sql("""
            SELECT name, orbital_radius
            FROM exoplanets
            WHERE name LIKE 'Kepler-20 %'
            ORDER BY orbital_radius DESC, name
            LIMIT 1""")),
        ("E", "How many planets does Tau Ceti have?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE name LIKE 'Tau Ceti %'""")),
        ("E", "How many Kepler planets were announced in 2016?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE name LIKE 'Kepler-%' AND discovery_year = 2016""")),
        ("M", "How many TOI planets were found each year?", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE name LIKE 'TOI-%'
            GROUP BY discovery_year"""), "TESS Objects of Interest are named 'TOI-...'."),
        ("H", "Which planetary systems have at least six known planets?", sql("""
            SELECT rtrim(substr(name, 1, length(name) - 1)) AS system, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY system
            HAVING COUNT(*) >= 6
            ORDER BY planet_count DESC, system"""),
            "A planet's system is its name without the final letter: 'Kepler-11 b' -> 'Kepler-11' (this also "
            "handles 'Kepler-90b'). Ordered by size for readability."),
        ("M", "What types of planets are in the Kepler-11 system, and how many of each?", sql("""
            SELECT planet_type, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE name LIKE 'Kepler-11 %'
            GROUP BY planet_type""")),
        ("M", "What is the eccentricity of each planet around GJ 667 C, from most to least eccentric?", sql("""
            SELECT name, eccentricity
            FROM exoplanets
            WHERE name LIKE 'GJ 667 C %'
            ORDER BY eccentricity DESC, name""")),
        ("E", "When were the planets of HD 219134 discovered?", sql("""
            SELECT name, discovery_year
            FROM exoplanets
            WHERE name LIKE 'HD 219134 %'""")),
        # ---------------------------------------------------------------- aggregates
        ("E", "What is the average distance to the known exoplanets?", sql("""
            SELECT AVG(distance)
            FROM exoplanets""")),
        ("M", "Which exoplanet is closest to Earth?", sql("""
            SELECT name, distance
            FROM exoplanets
            WHERE distance IS NOT NULL
            ORDER BY distance, name
            LIMIT 1""")),
        ("M", "Which are the most distant exoplanets we know of?", sql("""
            SELECT name, distance
            FROM exoplanets
            WHERE distance = (SELECT MAX(distance) FROM exoplanets)"""), "Two planets share the largest distance."),
        ("E", "What is the highest orbital eccentricity on record?", sql("""
            SELECT MAX(eccentricity)
            FROM exoplanets""")),
        ("E", "What's the longest orbital period in the data, in years?", sql("""
            SELECT MAX(orbital_period)
            FROM exoplanets""")),
        ("E", "When was the first exoplanet discovered?", sql("""
            SELECT MIN(discovery_year)
            FROM exoplanets""")),
        ("E", "What's the average eccentricity of gas giants?", sql("""
            SELECT AVG(eccentricity)
            FROM exoplanets
            WHERE planet_type = 'Gas Giant'""")),
        ("E", "How many planets has gravitational microlensing found since 2015?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE detection_method = 'Gravitational Microlensing' AND discovery_year >= 2015""")),
        ("E", "How many different detection methods appear in the data?", sql("""
            SELECT COUNT(DISTINCT detection_method)
            FROM exoplanets""")),
        ("E", "Over which years were radial velocity planets discovered?", sql("""
            SELECT MIN(discovery_year) AS first_year, MAX(discovery_year) AS last_year
            FROM exoplanets
            WHERE detection_method = 'Radial Velocity'""")),
        ("E", "How bright, on average, are the host stars of transiting planets?", sql("""
            SELECT AVG(stellar_magnitude)
            FROM exoplanets
            WHERE detection_method = 'Transit'""")),
        ("M", "What is the average orbital period of super-Earths in days?", sql("""
            SELECT AVG(orbital_period) * 365.25 AS avg_period_days
            FROM exoplanets
            WHERE planet_type = 'Super Earth'""")),
        ("E", "How many planets have their mass measured relative to Jupiter?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE mass_wrt = 'Jupiter'""")),
        ("E", "What's the smallest and largest distance of a terrestrial planet?", sql("""
            SELECT MIN(distance) AS min_distance, MAX(distance) AS max_distance
            FROM exoplanets
            WHERE planet_type = 'Terrestrial'""")),
        ("E", "What is the total number of planets discovered from 2019 through 2022?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE discovery_year BETWEEN 2019 AND 2022""")),
        ("E", "What is the typical orbital radius of a Neptune-like planet?", sql("""
            SELECT AVG(orbital_radius)
            FROM exoplanets
            WHERE planet_type = 'Neptune-like'"""), "'Typical' taken as the average."),
        # ---------------------------------------------------------------- GROUP BY / HAVING
        ("M", "How many planets of each type are there?", sql("""
            SELECT planet_type, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY planet_type""")),
        ("M", "How many exoplanets were discovered using each method? Order by the number of discoveries.", sql("""
            SELECT detection_method, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY detection_method
            ORDER BY planet_count DESC, detection_method""")),
        ("M", "How many planets were discovered each year since 2015?", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE discovery_year >= 2015
            GROUP BY discovery_year""")),
        ("M", "Which detection methods have found more than 100 planets?", sql("""
            SELECT detection_method, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY detection_method
            HAVING COUNT(*) > 100""")),
        ("M", "In which years were more than 500 planets discovered?", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY discovery_year
            HAVING COUNT(*) > 500""")),
        ("M", "What is the average distance for each type of planet?", sql("""
            SELECT planet_type, AVG(distance) AS avg_distance
            FROM exoplanets
            GROUP BY planet_type""")),
        ("M", "For each detection method, what's the average orbital eccentricity?", sql("""
            SELECT detection_method, AVG(eccentricity) AS avg_eccentricity
            FROM exoplanets
            GROUP BY detection_method""")),
        ("M", "Which planet types take longer than a year to orbit, on average?", sql("""
            SELECT planet_type, AVG(orbital_period) AS avg_period
            FROM exoplanets
            GROUP BY planet_type
            HAVING AVG(orbital_period) > 1""")),
        ("M", "Which years had fewer than 5 discoveries?", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY discovery_year
            HAVING COUNT(*) < 5""")),
        ("M", "Break down transit discoveries by planet type.", sql("""
            SELECT planet_type, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE detection_method = 'Transit'
            GROUP BY planet_type""")),
        ("M", "Count how many exoplanets of each type were discovered each year. Order by year ascending and count descending.", sql("""
            SELECT discovery_year, planet_type, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY discovery_year, planet_type
            ORDER BY discovery_year, planet_count DESC, planet_type""")),
        ("M", "What is the most common type of planet found by radial velocity?", sql("""
            SELECT planet_type, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE detection_method = 'Radial Velocity'
            GROUP BY planet_type
            ORDER BY planet_count DESC, planet_type
            LIMIT 1""")),
        ("M", "Which detection methods were used in 2022, and how many planets did each find?", sql("""
            SELECT detection_method, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE discovery_year = 2022
            GROUP BY detection_method""")),
        ("M", "In which years were at least four different detection methods used?", sql("""
            SELECT discovery_year, COUNT(DISTINCT detection_method) AS method_count
            FROM exoplanets
            GROUP BY discovery_year
            HAVING COUNT(DISTINCT detection_method) >= 4""")),
        ("M", "Which detection methods have found only one planet?", sql("""
            SELECT detection_method
            FROM exoplanets
            GROUP BY detection_method
            HAVING COUNT(*) = 1""")),
        ("M", "On average, how many planets are discovered per year?", sql("""
            SELECT AVG(planet_count)
            FROM (
                SELECT COUNT(*) AS planet_count
                FROM exoplanets
                GROUP BY discovery_year
            )"""), "Averaged over the years that have at least one discovery."),
        ("M", "How many planets are measured in Earth masses and how many in Jupiter masses?", sql("""
            SELECT mass_wrt, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE mass_wrt IS NOT NULL
            GROUP BY mass_wrt""")),
        ("M", "What is the largest orbital radius for each planet type?", sql("""
            SELECT planet_type, MAX(orbital_radius) AS max_orbital_radius
            FROM exoplanets
            GROUP BY planet_type""")),
        ("M", "For each detection method, when was its first discovery and how far away was the closest planet it found?", sql("""
            SELECT detection_method, MIN(discovery_year) AS first_year, MIN(distance) AS min_distance
            FROM exoplanets
            GROUP BY detection_method""")),
        ("M", "Which planet types have an average eccentricity above 0.1?", sql("""
            SELECT planet_type, AVG(eccentricity) AS avg_eccentricity
            FROM exoplanets
            GROUP BY planet_type
            HAVING AVG(eccentricity) > 0.1""")),
        ("M", "How many gas giants were found by each method after 2010, for methods with at least 10 of them?", sql("""
            SELECT detection_method, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE planet_type = 'Gas Giant' AND discovery_year > 2010
            GROUP BY detection_method
            HAVING COUNT(*) >= 10""")),
        # ---------------------------------------------------------------- ORDER BY + LIMIT
        ("M", "What are the 2 closest exoplanets?", sql("""
            SELECT name, distance
            FROM exoplanets
            WHERE distance IS NOT NULL
            ORDER BY distance, name
            LIMIT 2""")),
        ("M", "Show the 9 planets with the most eccentric orbits.", sql("""
            SELECT name, eccentricity
            FROM exoplanets
            ORDER BY eccentricity DESC, name
            LIMIT 9""")),
        ("M", "Which three planets have the longest orbital periods?", sql("""
            SELECT name, orbital_period
            FROM exoplanets
            ORDER BY orbital_period DESC, name
            LIMIT 3""")),
        ("M", "Name the 4 planets with the shortest orbits, with their periods in hours.", sql("""
            SELECT name, orbital_period * 365.25 * 24 AS period_hours
            FROM exoplanets
            ORDER BY orbital_period, name
            LIMIT 4""")),
        ("M", "Which planets orbit the five brightest host stars?", sql("""
            SELECT name, stellar_magnitude
            FROM exoplanets
            WHERE stellar_magnitude IS NOT NULL
            ORDER BY stellar_magnitude, name
            LIMIT 5"""), "Brightest = lowest stellar_magnitude."),
        ("M", "Which planets were found in the most recent year of direct imaging discoveries?", sql("""
            SELECT name, discovery_year
            FROM exoplanets
            WHERE detection_method = 'Direct Imaging'
              AND discovery_year = (SELECT MAX(discovery_year) FROM exoplanets WHERE detection_method = 'Direct Imaging')""")),
        ("M", "Which 3 planets have the widest orbits?", sql("""
            SELECT name, orbital_radius
            FROM exoplanets
            ORDER BY orbital_radius DESC, name
            LIMIT 3""")),
        ("M", "What are the top 3 detection methods by number of planets found?", sql("""
            SELECT detection_method, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY detection_method
            ORDER BY planet_count DESC, detection_method
            LIMIT 3""")),
        ("M", "Which gas giant is nearest to us?", sql("""
            SELECT name, distance
            FROM exoplanets
            WHERE planet_type = 'Gas Giant' AND distance IS NOT NULL
            ORDER BY distance, name
            LIMIT 1""")),
        ("M", "List the 10 most distant planets found by microlensing.", sql("""
            SELECT name, distance
            FROM exoplanets
            WHERE detection_method = 'Gravitational Microlensing'
            ORDER BY distance DESC, name
            LIMIT 10""")),
        ("M", "Which year brought the second most discoveries?", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY discovery_year
            ORDER BY planet_count DESC, discovery_year
            LIMIT 1 OFFSET 1""")),
        ("M", "Sort the planet types by how far away they are on average, farthest first.", sql("""
            SELECT planet_type, AVG(distance) AS avg_distance
            FROM exoplanets
            GROUP BY planet_type
            ORDER BY avg_distance DESC, planet_type""")),
        ("M", "List the terrestrial planets discovered in 2016, in alphabetical order.", sql("""
            SELECT name
            FROM exoplanets
            WHERE planet_type = 'Terrestrial' AND discovery_year = 2016
            ORDER BY name""")),
        # ---------------------------------------------------------------- mass: reference_planets join
        ("H", "What is the mass of 51 Pegasi b in kilograms?", sql("""
            SELECT e.mass_multiplier * r.mass AS mass_kg
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.name = '51 Pegasi b'""")),
        ("H", "How many planets are heavier than Jupiter?", sql("""
            SELECT COUNT(*)
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.mass_multiplier * r.mass > {JUPITER}""")),
        ("H", "What are the 5 most massive planets, with their mass in kg?", sql("""
            SELECT e.name, e.mass_multiplier * r.mass AS mass_kg
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            ORDER BY mass_kg DESC, e.name
            LIMIT 5""")),
        ("H", "How massive is each TRAPPIST-1 planet in Earth masses?", sql("""
            SELECT e.name, e.mass_multiplier * r.mass / {EARTH} AS mass_earths
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.name LIKE 'TRAPPIST-1 %'""")),
        ("H", "Which planets are lighter than Earth?", sql("""
            SELECT e.name, e.mass_multiplier * r.mass / {EARTH} AS mass_earths
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.mass_multiplier * r.mass < {EARTH}""")),
        ("H", "What is the combined mass, in Jupiter masses, of all planets discovered in 2016?", sql("""
            SELECT SUM(e.mass_multiplier * r.mass) / {JUPITER} AS total_mass_jupiters
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.discovery_year = 2016""")),
        ("H", "What is the average mass of a super-Earth, in Earth masses?", sql("""
            SELECT AVG(e.mass_multiplier * r.mass) / {EARTH} AS avg_mass_earths
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.planet_type = 'Super Earth'""")),
        ("M", "How many Earth masses is Jupiter?", sql("""
            SELECT {JUPITER} / {EARTH} AS earth_masses""")),
        ("H", "What's the heaviest planet found by the transit method?", sql("""
            SELECT e.name, e.mass_multiplier * r.mass AS mass_kg
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.detection_method = 'Transit'
            ORDER BY mass_kg DESC, e.name
            LIMIT 1""")),
        ("H", "What is the average mass of each planet type in kilograms?", sql("""
            SELECT e.planet_type, AVG(e.mass_multiplier * r.mass) AS avg_mass_kg
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            GROUP BY e.planet_type""")),
        ("H", "Which planets weigh between 1 and 2 Earth masses?", sql("""
            SELECT e.name, e.mass_multiplier * r.mass / {EARTH} AS mass_earths
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.mass_multiplier * r.mass BETWEEN {EARTH} AND 2 * {EARTH}""")),
        ("H", "Sort the Kepler-11 planets from lightest to heaviest, with masses in Earth masses.", sql("""
            SELECT e.name, e.mass_multiplier * r.mass / {EARTH} AS mass_earths
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.name LIKE 'Kepler-11 %'
            ORDER BY mass_earths, e.name""")),
        ("H", "Which detection method finds the lightest planets on average?", sql("""
            SELECT e.detection_method, AVG(e.mass_multiplier * r.mass) AS avg_mass_kg
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            GROUP BY e.detection_method
            ORDER BY avg_mass_kg, e.detection_method
            LIMIT 1""")),
        ("H", "How heavy is the most massive exoplanet, in Jupiter masses?", sql("""
            SELECT MAX(e.mass_multiplier * r.mass) / {JUPITER} AS max_mass_jupiters
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name""")),
        ("H", "Which planets are more than 20 times as massive as Jupiter?", sql("""
            SELECT e.name, e.mass_multiplier * r.mass / {JUPITER} AS mass_jupiters
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.mass_multiplier * r.mass > 20 * {JUPITER}""")),
        ("H", "Show the 10 heaviest terrestrial planets with their mass in Earth masses.", sql("""
            SELECT e.name, e.mass_multiplier * r.mass / {EARTH} AS mass_earths
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.planet_type = 'Terrestrial'
            ORDER BY mass_earths DESC, e.name
            LIMIT 10""")),
        ("H", "How much mass, in Jupiter masses, has each detection method found in total?", sql("""
            SELECT e.detection_method, SUM(e.mass_multiplier * r.mass) / {JUPITER} AS total_mass_jupiters
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            GROUP BY e.detection_method""")),
        ("H", "Which gas giants are lighter than Saturn, about 95 Earth masses?", sql("""
            SELECT e.name, e.mass_multiplier * r.mass / {EARTH} AS mass_earths
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.planet_type = 'Gas Giant' AND e.mass_multiplier * r.mass < 95 * {EARTH}""")),
        ("H", "What is the mass of Proxima Centauri b in Jupiter masses?", sql("""
            SELECT e.mass_multiplier * r.mass / {JUPITER} AS mass_jupiters
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.name = 'Proxima Centauri b'""")),
        ("H", "What is the total mass of the TRAPPIST-1 planets in kilograms?", sql("""
            SELECT SUM(e.mass_multiplier * r.mass) AS total_mass_kg
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.name LIKE 'TRAPPIST-1 %'""")),
        ("H", "In which years was the average discovered planet heavier than Jupiter?", sql("""
            SELECT e.discovery_year, AVG(e.mass_multiplier * r.mass) / {JUPITER} AS avg_mass_jupiters
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            GROUP BY e.discovery_year
            HAVING AVG(e.mass_multiplier * r.mass) > {JUPITER}""")),
        # ---------------------------------------------------------------- ratios and percentages
        ("M", "What percentage of exoplanets were found by the transit method?", sql("""
            SELECT 100.0 * SUM(CASE WHEN detection_method = 'Transit' THEN 1 ELSE 0 END) / COUNT(*) AS pct_transit
            FROM exoplanets""")),
        ("H", "For each planet type, what share of its planets was found by radial velocity?", sql("""
            SELECT planet_type,
                   100.0 * SUM(CASE WHEN detection_method = 'Radial Velocity' THEN 1 ELSE 0 END) / COUNT(*) AS pct_radial_velocity
            FROM exoplanets
            GROUP BY planet_type"""), "Share as a percentage."),
        ("H", "What percentage of all discoveries does each detection method account for?", sql("""
            SELECT detection_method, 100.0 * COUNT(*) / (SELECT COUNT(*) FROM exoplanets) AS pct_of_planets
            FROM exoplanets
            GROUP BY detection_method""")),
        ("M", "How many gas giants are there for every super-Earth?", sql("""
            SELECT 1.0 * SUM(CASE WHEN planet_type = 'Gas Giant' THEN 1 ELSE 0 END)
                   / SUM(CASE WHEN planet_type = 'Super Earth' THEN 1 ELSE 0 END) AS giants_per_super_earth
            FROM exoplanets""")),
        ("M", "What fraction of the 2016 discoveries were Neptune-like?", sql("""
            SELECT 1.0 * SUM(CASE WHEN planet_type = 'Neptune-like' THEN 1 ELSE 0 END) / COUNT(*) AS fraction_neptune_like
            FROM exoplanets
            WHERE discovery_year = 2016""")),
        ("H", "Since 2010, what percentage of each year's discoveries came from transits?", sql("""
            SELECT discovery_year,
                   100.0 * SUM(CASE WHEN detection_method = 'Transit' THEN 1 ELSE 0 END) / COUNT(*) AS pct_transit
            FROM exoplanets
            WHERE discovery_year >= 2010
            GROUP BY discovery_year""")),
        ("H", "Estimate the mass of the star TRAPPIST-1 (in solar masses) from each of its planets' orbits using Kepler's third law.", sql("""
            SELECT name, orbital_radius * orbital_radius * orbital_radius / (orbital_period * orbital_period) AS star_mass_suns
            FROM exoplanets
            WHERE name LIKE 'TRAPPIST-1 %'"""),
            "Kepler's third law with the orbital radius in AU and the period in years: M = a^3 / P^2 solar masses."),
        ("H", "How many times farther from us is TRAPPIST-1 e than Proxima Centauri b?", sql("""
            SELECT (SELECT distance FROM exoplanets WHERE name = 'TRAPPIST-1 e')
                   / (SELECT distance FROM exoplanets WHERE name = 'Proxima Centauri b') AS distance_ratio""")),
        ("H", "Which 5 planets with both mass and radius in Earth units are the densest relative to Earth?", sql("""
            SELECT name, mass_multiplier / (radius_multiplier * radius_multiplier * radius_multiplier) AS density_vs_earth
            FROM exoplanets
            WHERE mass_wrt = 'Earth' AND radius_wrt = 'Earth'
            ORDER BY density_vs_earth DESC, name
            LIMIT 5"""), "Density relative to Earth's = mass / radius^3 in Earth units."),
        ("M", "What percentage of planets have an unknown orbital radius?", sql("""
            SELECT 100.0 * SUM(CASE WHEN orbital_radius IS NULL THEN 1 ELSE 0 END) / COUNT(*) AS pct_unknown
            FROM exoplanets""")),
        ("H", "What is the ratio of the average distance of microlensing planets to that of transiting planets?", sql("""
            SELECT AVG(CASE WHEN detection_method = 'Gravitational Microlensing' THEN distance END)
                   / AVG(CASE WHEN detection_method = 'Transit' THEN distance END) AS distance_ratio
            FROM exoplanets""")),
        ("H", "What share of the total planet mass discovered belongs to gas giants, in percent?", sql("""
            SELECT 100.0 * SUM(CASE WHEN e.planet_type = 'Gas Giant' THEN e.mass_multiplier * r.mass ELSE 0 END)
                   / SUM(e.mass_multiplier * r.mass) AS pct_mass_gas_giants
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name""")),
        # ---------------------------------------------------------------- window functions
        ("H", "Rank the planet types by number of discoveries within each year.", sql("""
            SELECT discovery_year, planet_type, COUNT(*) AS planet_count,
                   RANK() OVER (PARTITION BY discovery_year ORDER BY COUNT(*) DESC) AS type_rank
            FROM exoplanets
            GROUP BY discovery_year, planet_type""")),
        ("H", "Show a running total of transit discoveries by year.", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count,
                   SUM(COUNT(*)) OVER (ORDER BY discovery_year) AS running_total
            FROM exoplanets
            WHERE detection_method = 'Transit'
            GROUP BY discovery_year
            ORDER BY discovery_year""")),
        ("H", "For each year, how many planets were discovered and how does that compare with the year before?", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count,
                   COUNT(*) - LAG(COUNT(*)) OVER (ORDER BY discovery_year) AS change_from_previous
            FROM exoplanets
            GROUP BY discovery_year
            ORDER BY discovery_year"""), "The previous year is the previous year with discoveries."),
        ("H", "Give the 3-year moving average of the number of discoveries.", sql("""
            WITH yearly AS (
                SELECT discovery_year, COUNT(*) AS planet_count
                FROM exoplanets
                GROUP BY discovery_year
            )
            SELECT discovery_year, planet_count,
                   AVG(planet_count) OVER (ORDER BY discovery_year ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS moving_avg
            FROM yearly
            ORDER BY discovery_year""")),
        ("H", "How did the cumulative number of discoveries grow for each detection method over the years?", sql("""
            SELECT detection_method, discovery_year, COUNT(*) AS planet_count,
                   SUM(COUNT(*)) OVER (PARTITION BY detection_method ORDER BY discovery_year) AS cumulative_count
            FROM exoplanets
            GROUP BY detection_method, discovery_year
            ORDER BY detection_method, discovery_year""")),
        ("H", "What are the two closest planets found by each detection method?", sql("""
            WITH ranked AS (
                SELECT detection_method, name, distance,
                       ROW_NUMBER() OVER (PARTITION BY detection_method ORDER BY distance, name) AS distance_rank
                FROM exoplanets
                WHERE distance IS NOT NULL
            )
            SELECT detection_method, name, distance
            FROM ranked
            WHERE distance_rank <= 2""")),
        ("H", "Rank the TRAPPIST-1 planets by their distance from the star.", sql("""
            SELECT name, orbital_radius,
                   RANK() OVER (ORDER BY orbital_radius) AS orbit_rank
            FROM exoplanets
            WHERE name LIKE 'TRAPPIST-1 %'""")),
        ("H", "What share of all discoveries does each year account for?", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count,
                   100.0 * COUNT(*) / SUM(COUNT(*)) OVER () AS pct_of_all
            FROM exoplanets
            GROUP BY discovery_year"""), "Share as a percentage."),
        ("H", "List the 3 most eccentric planets found each year since 2020.", sql("""
            WITH ranked AS (
                SELECT discovery_year, name, eccentricity,
                       RANK() OVER (PARTITION BY discovery_year ORDER BY eccentricity DESC) AS ecc_rank
                FROM exoplanets
                WHERE discovery_year >= 2020
            )
            SELECT discovery_year, name, eccentricity
            FROM ranked
            WHERE ecc_rank <= 3"""), "RANK keeps ties at third place."),
        ("H", "For each planet type, which planet has the longest orbital period?", sql("""
            WITH ranked AS (
                SELECT planet_type, name, orbital_period,
                       ROW_NUMBER() OVER (PARTITION BY planet_type ORDER BY orbital_period DESC, name) AS period_rank
                FROM exoplanets
            )
            SELECT planet_type, name, orbital_period
            FROM ranked
            WHERE period_rank = 1""")),
        ("H", "By what percentage did the number of discoveries change each year compared with the previous one?", sql("""
            WITH yearly AS (
                SELECT discovery_year, COUNT(*) AS planet_count
                FROM exoplanets
                GROUP BY discovery_year
            )
            SELECT discovery_year, planet_count,
                   100.0 * (planet_count - LAG(planet_count) OVER (ORDER BY discovery_year))
                   / LAG(planet_count) OVER (ORDER BY discovery_year) AS pct_change
            FROM yearly
            ORDER BY discovery_year""")),
        ("H", "Rank the detection methods by the average distance of their planets, without gaps in the ranking.", sql("""
            SELECT detection_method, AVG(distance) AS avg_distance,
                   DENSE_RANK() OVER (ORDER BY AVG(distance) DESC) AS distance_rank
            FROM exoplanets
            GROUP BY detection_method""")),
        ("H", "Show the running total of gas giants discovered, year by year.", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count,
                   SUM(COUNT(*)) OVER (ORDER BY discovery_year) AS running_total
            FROM exoplanets
            WHERE planet_type = 'Gas Giant'
            GROUP BY discovery_year
            ORDER BY discovery_year""")),
        ("H", "For each Kepler-11 planet, how much longer is its orbital period than the next planet inside it, in days?", sql("""
            SELECT name, orbital_period * 365.25 AS period_days,
                   (orbital_period - LAG(orbital_period) OVER (ORDER BY orbital_period, name)) * 365.25 AS gap_days
            FROM exoplanets
            WHERE name LIKE 'Kepler-11 %'
            ORDER BY orbital_period, name""")),
        ("H", "Split the planets with a known distance into four equal distance groups and give the average distance of each group.", sql("""
            WITH quartiles AS (
                SELECT distance, NTILE(4) OVER (ORDER BY distance, name) AS quartile
                FROM exoplanets
                WHERE distance IS NOT NULL
            )
            SELECT quartile, AVG(distance) AS avg_distance, COUNT(*) AS planet_count
            FROM quartiles
            GROUP BY quartile""")),
        ("H", "Which planets are the closest to Earth in their discovery year, using a ranking?", sql("""
            WITH ranked AS (
                SELECT discovery_year, name, distance,
                       RANK() OVER (PARTITION BY discovery_year ORDER BY distance) AS distance_rank
                FROM exoplanets
                WHERE distance IS NOT NULL
            )
            SELECT discovery_year, name, distance
            FROM ranked
            WHERE distance_rank = 1""")),
        ("H", "For every year, show the number of discoveries next to the highest yearly count so far.", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count,
                   MAX(COUNT(*)) OVER (ORDER BY discovery_year) AS record_so_far
            FROM exoplanets
            GROUP BY discovery_year
            ORDER BY discovery_year""")),
        # ---------------------------------------------------------------- subqueries
        ("M", "How many planets are farther away than the average exoplanet?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE distance > (SELECT AVG(distance) FROM exoplanets)""")),
        ("M", "Which other planets were discovered in the same year as 47 Ursae Majoris b?", sql("""
            SELECT name
            FROM exoplanets
            WHERE discovery_year = (SELECT discovery_year FROM exoplanets WHERE name = '47 Ursae Majoris b')
              AND name <> '47 Ursae Majoris b'""")),
        ("M", "Which years had the fewest discoveries?", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY discovery_year
            HAVING COUNT(*) = (
                SELECT MIN(planet_count)
                FROM (SELECT COUNT(*) AS planet_count FROM exoplanets GROUP BY discovery_year)
            )"""), "Several years tie for the fewest; all are returned."),
        ("H", "Which years had more discoveries than the yearly average?", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY discovery_year
            HAVING COUNT(*) > (
                SELECT AVG(planet_count)
                FROM (SELECT COUNT(*) AS planet_count FROM exoplanets GROUP BY discovery_year)
            )""")),
        ("M", "Which planet types have never been found by direct imaging?", sql("""
            SELECT DISTINCT planet_type
            FROM exoplanets
            WHERE planet_type NOT IN (
                SELECT planet_type
                FROM exoplanets
                WHERE detection_method = 'Direct Imaging'
            )""")),
        ("M", "Which gas giants have a more eccentric orbit than the average gas giant?", sql("""
            SELECT name, eccentricity
            FROM exoplanets
            WHERE planet_type = 'Gas Giant'
              AND eccentricity > (SELECT AVG(eccentricity) FROM exoplanets WHERE planet_type = 'Gas Giant')""")),
        ("M", "Among planets within 100 light years, which has the most eccentric orbit?", sql("""
            SELECT name, eccentricity
            FROM exoplanets
            WHERE distance < 100
              AND eccentricity = (SELECT MAX(eccentricity) FROM exoplanets WHERE distance < 100)""")),
        ("H", "Which planets of HD 10180 have a more eccentric orbit than the average planet of their type?", sql("""
            SELECT e.name, e.planet_type, e.eccentricity
            FROM exoplanets e
            WHERE e.name LIKE 'HD 10180 %'
              AND e.eccentricity > (
                  SELECT AVG(e2.eccentricity)
                  FROM exoplanets e2
                  WHERE e2.planet_type = e.planet_type
              )"""), "Correlated subquery."),
        ("M", "Which detection methods have found at least one terrestrial planet?", sql("""
            SELECT DISTINCT detection_method
            FROM exoplanets
            WHERE planet_type = 'Terrestrial'""")),
        ("H", "Which detection methods found planets in years when no planet was found by transit?", sql("""
            SELECT DISTINCT detection_method
            FROM exoplanets
            WHERE discovery_year NOT IN (
                SELECT discovery_year
                FROM exoplanets
                WHERE detection_method = 'Transit'
            )""")),
        ("M", "Which planets orbit farther out than every planet of the Kepler-11 system but closer than 0.5 AU?", sql("""
            SELECT name, orbital_radius
            FROM exoplanets
            WHERE orbital_radius > (SELECT MAX(orbital_radius) FROM exoplanets WHERE name LIKE 'Kepler-11 %')
              AND orbital_radius < 0.5""")),
        ("H", "How many planets are heavier than the average gas giant?", sql("""
            SELECT COUNT(*)
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.mass_multiplier * r.mass > (
                SELECT AVG(e2.mass_multiplier * r2.mass)
                FROM exoplanets e2
                JOIN reference_planets r2 ON e2.mass_wrt = r2.name
                WHERE e2.planet_type = 'Gas Giant'
            )""")),
        ("M", "Which planet types were already known before 2000?", sql("""
            SELECT DISTINCT planet_type
            FROM exoplanets
            WHERE discovery_year < 2000""")),
        ("H", "Which detection methods have an average distance above the overall average distance?", sql("""
            SELECT detection_method, AVG(distance) AS avg_distance
            FROM exoplanets
            GROUP BY detection_method
            HAVING AVG(distance) > (SELECT AVG(distance) FROM exoplanets)""")),
        # ---------------------------------------------------------------- NULL handling
        ("E", "How many planets have no recorded stellar magnitude?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE stellar_magnitude IS NULL""")),
        ("E", "Which planets are missing a mass measurement?", sql("""
            SELECT name
            FROM exoplanets
            WHERE mass_multiplier IS NULL""")),
        ("E", "How many planets have no known distance?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE distance IS NULL""")),
        ("M", "For each detection method, how many planets have an unknown orbital radius?", sql("""
            SELECT detection_method, COUNT(*) AS unknown_count
            FROM exoplanets
            WHERE orbital_radius IS NULL
            GROUP BY detection_method""")),
        ("E", "Which planets have neither a mass nor a radius recorded?", sql("""
            SELECT name
            FROM exoplanets
            WHERE mass_multiplier IS NULL AND radius_multiplier IS NULL""")),
        ("M", "For each planet type, how many planets have a known orbital radius out of how many in total?", sql("""
            SELECT planet_type, COUNT(orbital_radius) AS known_radius, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY planet_type"""), "COUNT(column) skips NULLs."),
        ("M", "How many planets have a known distance and how many don't?", sql("""
            SELECT CASE WHEN distance IS NULL THEN 'unknown' ELSE 'known' END AS distance_status, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY distance_status""")),
        ("E", "What unit is each KIC 10001893 planet's mass given in? Say 'unknown' if there is none.", sql("""
            SELECT name, COALESCE(mass_wrt, 'unknown') AS mass_unit
            FROM exoplanets
            WHERE name LIKE 'KIC 10001893 %'""")),
        ("E", "Which planets discovered by radial velocity have no orbital radius?", sql("""
            SELECT name
            FROM exoplanets
            WHERE detection_method = 'Radial Velocity' AND orbital_radius IS NULL""")),
        ("M", "What's the average stellar magnitude per planet type, counting only stars with a known magnitude?", sql("""
            SELECT planet_type, AVG(stellar_magnitude) AS avg_magnitude, COUNT(stellar_magnitude) AS stars_counted
            FROM exoplanets
            WHERE stellar_magnitude IS NOT NULL
            GROUP BY planet_type""")),
        # ---------------------------------------------------------------- CASE
        ("M", "Sort planets into near (under 100 light years), mid (100 to 1000) and far (over 1000) and count each group.", sql("""
            SELECT CASE
                       WHEN distance < 100 THEN 'near'
                       WHEN distance <= 1000 THEN 'mid'
                       ELSE 'far'
                   END AS distance_band,
                   COUNT(*) AS planet_count
            FROM exoplanets
            WHERE distance IS NOT NULL
            GROUP BY distance_band""")),
        ("M", "How many orbits are circular, slightly eccentric (below 0.2) or highly eccentric?", sql("""
            SELECT CASE
                       WHEN eccentricity = 0 THEN 'circular'
                       WHEN eccentricity < 0.2 THEN 'slightly eccentric'
                       ELSE 'highly eccentric'
                   END AS orbit_shape,
                   COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY orbit_shape"""), "Three planets have a (bad) negative eccentricity; they land in 'slightly eccentric'."),
        ("M", "How many planets were discovered in each decade?", sql("""
            SELECT discovery_year / 10 * 10 AS decade, COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY decade""")),
        ("M", "Label each TRAPPIST-1 planet as hot if its year lasts under 5 days and temperate otherwise.", sql("""
            SELECT name, CASE WHEN orbital_period * 365.25 < 5 THEN 'hot' ELSE 'temperate' END AS label
            FROM exoplanets
            WHERE name LIKE 'TRAPPIST-1 %'""")),
        ("M", "How many planets orbit in under a week, between a week and a year, and over a year?", sql("""
            SELECT CASE
                       WHEN orbital_period * 365.25 < 7 THEN 'under a week'
                       WHEN orbital_period <= 1 THEN 'a week to a year'
                       ELSE 'over a year'
                   END AS period_band,
                   COUNT(*) AS planet_count
            FROM exoplanets
            GROUP BY period_band""")),
        ("H", "For each detection method, how many planets were found before 2010 and how many from 2010 on?", sql("""
            SELECT detection_method,
                   SUM(CASE WHEN discovery_year < 2010 THEN 1 ELSE 0 END) AS before_2010,
                   SUM(CASE WHEN discovery_year >= 2010 THEN 1 ELSE 0 END) AS since_2010
            FROM exoplanets
            GROUP BY detection_method""")),
        ("H", "For each planet type, show its mass range using Earth masses for small planets and Jupiter masses for gas giants.", sql("""
            SELECT e.planet_type,
                   CASE WHEN e.planet_type = 'Gas Giant' THEN 'Jupiter' ELSE 'Earth' END AS unit,
                   MIN(e.mass_multiplier * r.mass) / CASE WHEN e.planet_type = 'Gas Giant' THEN {JUPITER} ELSE {EARTH} END AS min_mass,
                   MAX(e.mass_multiplier * r.mass) / CASE WHEN e.planet_type = 'Gas Giant' THEN {JUPITER} ELSE {EARTH} END AS max_mass
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            GROUP BY e.planet_type""")),
        ("M", "How many of the 2014 discoveries are bright-star planets (magnitude under 10) versus faint-star ones?", sql("""
            SELECT CASE WHEN stellar_magnitude < 10 THEN 'bright' ELSE 'faint' END AS star_brightness, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE discovery_year = 2014 AND stellar_magnitude IS NOT NULL
            GROUP BY star_brightness""")),
        ("H", "Convert each planet's radius to Earth radii and give the average per planet type.", sql("""
            SELECT planet_type,
                   AVG(CASE WHEN radius_wrt = 'Jupiter' THEN radius_multiplier * 11.2 ELSE radius_multiplier END) AS avg_radius_earths
            FROM exoplanets
            WHERE radius_multiplier IS NOT NULL
            GROUP BY planet_type"""), "Jupiter's radius is about 11.2 Earth radii (not in reference_planets, which holds masses)."),
        # ---------------------------------------------------------------- multi-step
        ("H", "In the year with the most discoveries, which detection methods were used and how many planets did each find?", sql("""
            SELECT detection_method, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE discovery_year = (
                SELECT discovery_year
                FROM exoplanets
                GROUP BY discovery_year
                ORDER BY COUNT(*) DESC, discovery_year
                LIMIT 1
            )
            GROUP BY detection_method""")),
        ("H", "Which detection method found the most planets in the year with the most gas giant discoveries?", sql("""
            WITH top_year AS (
                SELECT discovery_year
                FROM exoplanets
                WHERE planet_type = 'Gas Giant'
                GROUP BY discovery_year
                ORDER BY COUNT(*) DESC, discovery_year
                LIMIT 1
            )
            SELECT detection_method, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE discovery_year = (SELECT discovery_year FROM top_year)
            GROUP BY detection_method
            ORDER BY planet_count DESC, detection_method
            LIMIT 1""")),
        ("H", "Among the 20 closest planets, how many are there of each type?", sql("""
            WITH closest AS (
                SELECT name, planet_type
                FROM exoplanets
                WHERE distance IS NOT NULL
                ORDER BY distance, name
                LIMIT 20
            )
            SELECT planet_type, COUNT(*) AS planet_count
            FROM closest
            GROUP BY planet_type""")),
        ("H", "For the planet type with the highest average eccentricity, list its 5 most eccentric planets.", sql("""
            SELECT name, eccentricity
            FROM exoplanets
            WHERE planet_type = (
                SELECT planet_type
                FROM exoplanets
                GROUP BY planet_type
                ORDER BY AVG(eccentricity) DESC, planet_type
                LIMIT 1
            )
            ORDER BY eccentricity DESC, name
            LIMIT 5""")),
        ("H", "In which year did the transit method first find more planets than radial velocity?", sql("""
            SELECT MIN(discovery_year)
            FROM (
                SELECT discovery_year
                FROM exoplanets
                GROUP BY discovery_year
                HAVING SUM(CASE WHEN detection_method = 'Transit' THEN 1 ELSE 0 END)
                     > SUM(CASE WHEN detection_method = 'Radial Velocity' THEN 1 ELSE 0 END)
            )""")),
        ("H", "Which planetary system has the most planets, and what is their combined mass in Earth masses?", sql("""
            WITH systems AS (
                SELECT rtrim(substr(e.name, 1, length(e.name) - 1)) AS system,
                       COUNT(*) AS planet_count,
                       SUM(e.mass_multiplier * r.mass) / {EARTH} AS total_mass_earths
                FROM exoplanets e
                JOIN reference_planets r ON e.mass_wrt = r.name
                GROUP BY system
            )
            SELECT system, planet_count, total_mass_earths
            FROM systems
            ORDER BY planet_count DESC, system
            LIMIT 1"""), "A planet's system is its name without the final letter ('Kepler-90b' -> 'Kepler-90')."),
        ("H", "How many planets does a multi-planet system have on average?", sql("""
            SELECT AVG(planet_count)
            FROM (
                SELECT rtrim(substr(name, 1, length(name) - 1)) AS system, COUNT(*) AS planet_count
                FROM exoplanets
                GROUP BY system
                HAVING COUNT(*) >= 2
            )"""), "A planet's system is its name without the final letter; multi-planet = 2 or more planets."),
        ("H", "Which planets are among both the 20 closest and the 20 brightest-star planets?", sql("""
            SELECT name
            FROM (
                SELECT name
                FROM exoplanets
                WHERE distance IS NOT NULL
                ORDER BY distance, name
                LIMIT 20
            )
            INTERSECT
            SELECT name
            FROM (
                SELECT name
                FROM exoplanets
                WHERE stellar_magnitude IS NOT NULL
                ORDER BY stellar_magnitude, name
                LIMIT 20
            )""")),
        ("H", "What is the most common detection method among planets heavier than Jupiter?", sql("""
            SELECT e.detection_method, COUNT(*) AS planet_count
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.mass_multiplier * r.mass > {JUPITER}
            GROUP BY e.detection_method
            ORDER BY planet_count DESC, e.detection_method
            LIMIT 1""")),
        ("H", "For the detection method that found the most planets, how many did it find in each of its top 3 years?", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE detection_method = (
                SELECT detection_method
                FROM exoplanets
                GROUP BY detection_method
                ORDER BY COUNT(*) DESC, detection_method
                LIMIT 1
            )
            GROUP BY discovery_year
            ORDER BY planet_count DESC, discovery_year
            LIMIT 3""")),
        ("H", "What fraction of the planets discovered in the busiest year were super-Earths?", sql("""
            SELECT 1.0 * SUM(CASE WHEN planet_type = 'Super Earth' THEN 1 ELSE 0 END) / COUNT(*) AS fraction_super_earths
            FROM exoplanets
            WHERE discovery_year = (
                SELECT discovery_year
                FROM exoplanets
                GROUP BY discovery_year
                ORDER BY COUNT(*) DESC, discovery_year
                LIMIT 1
            )"""), "The busiest year is the year with the most discoveries."),
        ("H", "Compare the average mass in Earth masses of planets found by transit and by radial velocity.", sql("""
            SELECT e.detection_method, AVG(e.mass_multiplier * r.mass) / {EARTH} AS avg_mass_earths
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.detection_method IN ('Transit', 'Radial Velocity')
            GROUP BY e.detection_method""")),
        ("H", "Which planets were discovered in the first year that any Terrestrial planet was found?", sql("""
            SELECT name, planet_type
            FROM exoplanets
            WHERE discovery_year = (SELECT MIN(discovery_year) FROM exoplanets WHERE planet_type = 'Terrestrial')""")),
        ("H", "For each year since 2018, which detection method found the most planets?", sql("""
            WITH counts AS (
                SELECT discovery_year, detection_method, COUNT(*) AS planet_count,
                       RANK() OVER (PARTITION BY discovery_year ORDER BY COUNT(*) DESC) AS method_rank
                FROM exoplanets
                WHERE discovery_year >= 2018
                GROUP BY discovery_year, detection_method
            )
            SELECT discovery_year, detection_method, planet_count
            FROM counts
            WHERE method_rank = 1""")),
        ("H", "How many planets were found in the 5 years after the first transit discovery?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE discovery_year > (SELECT MIN(discovery_year) FROM exoplanets WHERE detection_method = 'Transit')
              AND discovery_year <= (SELECT MIN(discovery_year) FROM exoplanets WHERE detection_method = 'Transit') + 5""")),
    ]


# -------------------------------------------------------------------------------------------- test
def test_items() -> list[tuple]:
    return [
        # ---------------------------------------------------------------- easy
        ("E", "How many planets did gravitational microlensing turn up in 2019?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE detection_method = 'Gravitational Microlensing' AND discovery_year = 2019""")),
        ("E", "List the Kepler-20 planets and their types.", sql("""
            SELECT name, planet_type
            FROM exoplanets
            WHERE name LIKE 'Kepler-20 %'""")),
        ("E", "On average, how far away are the planets that were imaged directly?", sql("""
            SELECT AVG(distance)
            FROM exoplanets
            WHERE detection_method = 'Direct Imaging'""")),
        ("E", "Which planets were spotted by microlensing in 2004, and how far away are they?", sql("""
            SELECT name, distance
            FROM exoplanets
            WHERE detection_method = 'Gravitational Microlensing' AND discovery_year = 2004""")),
        ("E", "How many planets complete an orbit in under 10 days?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE orbital_period * 365.25 < 10"""), "orbital_period is in years."),
        ("E", "How many known planets lie more than 10,000 light years away?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE distance > 10000""")),
        ("E", "What is the most recent year in which radial velocity found a planet?", sql("""
            SELECT MAX(discovery_year)
            FROM exoplanets
            WHERE detection_method = 'Radial Velocity'""")),
        ("E", "Which planets have no known distance from Earth, and when were they found?", sql("""
            SELECT name, discovery_year
            FROM exoplanets
            WHERE distance IS NULL""")),
        ("E", "How many days does a year on Proxima Centauri b last?", sql("""
            SELECT orbital_period * 365.25 AS period_days
            FROM exoplanets
            WHERE name = 'Proxima Centauri b'"""), "A planet's year is its orbital period (stored in years)."),
        ("E", "How many of the K2 planets are gas giants?", sql("""
            SELECT COUNT(*)
            FROM exoplanets
            WHERE name LIKE 'K2-%' AND planet_type = 'Gas Giant'"""), "K2 mission planets are named 'K2-...'."),
        ("E", "What is the smallest orbital radius of any exoplanet?", sql("""
            SELECT MIN(orbital_radius)
            FROM exoplanets""")),
        # ---------------------------------------------------------------- medium
        ("M", "Which year saw the most gas giants discovered?", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE planet_type = 'Gas Giant'
            GROUP BY discovery_year
            ORDER BY planet_count DESC, discovery_year
            LIMIT 1""")),
        ("M", "How eccentric were the orbits of the planets found in each decade, on average?", sql("""
            SELECT discovery_year / 10 * 10 AS decade, AVG(eccentricity) AS avg_eccentricity
            FROM exoplanets
            GROUP BY decade""")),
        ("M", "Which detection methods find planets whose orbits have an average eccentricity above 0.2?", sql("""
            SELECT detection_method, AVG(eccentricity) AS avg_eccentricity
            FROM exoplanets
            GROUP BY detection_method
            HAVING AVG(eccentricity) > 0.2""")),
        ("M", "How many planets of each type were found in 2022?", sql("""
            SELECT planet_type, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE discovery_year = 2022
            GROUP BY planet_type""")),
        ("M", "Which are the three nearest super-Earths, and how was each one detected?", sql("""
            SELECT name, distance, detection_method
            FROM exoplanets
            WHERE planet_type = 'Super Earth' AND distance IS NOT NULL
            ORDER BY distance, name
            LIMIT 3""")),
        ("M", "Which five planets have the faintest host stars?", sql("""
            SELECT name, stellar_magnitude
            FROM exoplanets
            ORDER BY stellar_magnitude DESC, name
            LIMIT 5"""), "Fainter = higher stellar_magnitude."),
        ("M", "Name the five Neptune-like planets with the longest years.", sql("""
            SELECT name, orbital_period
            FROM exoplanets
            WHERE planet_type = 'Neptune-like'
            ORDER BY orbital_period DESC, name
            LIMIT 5"""), "A planet's year is its orbital period."),
        ("M", "Sort the planets of Kepler-80 from the fastest orbit to the slowest.", sql("""
            SELECT name, orbital_period
            FROM exoplanets
            WHERE name LIKE 'Kepler-80 %'
            ORDER BY orbital_period, name""")),
        ("M", "How many different kinds of planet has each detection method found?", sql("""
            SELECT detection_method, COUNT(DISTINCT planet_type) AS type_count
            FROM exoplanets
            GROUP BY detection_method""")),
        ("M", "Of the planets discovered since 2020, what percentage were found by microlensing?", sql("""
            SELECT 100.0 * COUNT(*) / (SELECT COUNT(*) FROM exoplanets WHERE discovery_year >= 2020) AS pct_microlensing
            FROM exoplanets
            WHERE detection_method = 'Gravitational Microlensing' AND discovery_year >= 2020""")),
        ("M", "In which years did the transit method find more than 100 planets?", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE detection_method = 'Transit'
            GROUP BY discovery_year
            HAVING COUNT(*) > 100""")),
        ("M", "Which directly imaged planets are nearer to us than the average directly imaged planet?", sql("""
            SELECT name, distance
            FROM exoplanets
            WHERE detection_method = 'Direct Imaging'
              AND distance < (SELECT AVG(distance) FROM exoplanets WHERE detection_method = 'Direct Imaging')""")),
        ("M", "What kinds of planets have astrometry or pulsar timing found?", sql("""
            SELECT DISTINCT planet_type
            FROM exoplanets
            WHERE detection_method IN ('Astrometry', 'Pulsar Timing')""")),
        ("M", "Were there any years in which no gas giant was discovered?", sql("""
            SELECT DISTINCT discovery_year
            FROM exoplanets
            WHERE discovery_year NOT IN (
                SELECT discovery_year
                FROM exoplanets
                WHERE planet_type = 'Gas Giant'
            )""")),
        ("M", "Which planets from 2016 were not found by the transit method, and how were they found?", sql("""
            SELECT name, detection_method
            FROM exoplanets
            WHERE discovery_year = 2016 AND detection_method <> 'Transit'""")),
        ("M", "For each detection method, what percentage of its planets has no orbital radius?", sql("""
            SELECT detection_method,
                   100.0 * SUM(CASE WHEN orbital_radius IS NULL THEN 1 ELSE 0 END) / COUNT(*) AS pct_unknown_radius
            FROM exoplanets
            GROUP BY detection_method""")),
        ("M", "Which planets orbit closer to their star than Mercury (0.39 AU) yet take more than 10 days to go around?", sql("""
            SELECT name, orbital_radius, orbital_period * 365.25 AS period_days
            FROM exoplanets
            WHERE orbital_radius < 0.39 AND orbital_period * 365.25 > 10""")),
        ("M", "What's the mean orbital period of the Kepler-11 planets, in days?", sql("""
            SELECT AVG(orbital_period) * 365.25 AS avg_period_days
            FROM exoplanets
            WHERE name LIKE 'Kepler-11 %'""")),
        ("M", "Which planetary systems have exactly five known planets?", sql("""
            SELECT rtrim(substr(name, 1, length(name) - 1)) AS system
            FROM exoplanets
            GROUP BY system
            HAVING COUNT(*) = 5"""), "A planet's system is its name without the final letter: 'Kepler-11 b' -> 'Kepler-11'."),
        ("M", "Planets found by which method are the farthest away on average?", sql("""
            SELECT detection_method, AVG(distance) AS avg_distance
            FROM exoplanets
            GROUP BY detection_method
            ORDER BY avg_distance DESC, detection_method
            LIMIT 1""")),
        ("M", "Which TRAPPIST-1 planets need more than a week to circle their star?", sql("""
            SELECT name, orbital_period * 365.25 AS period_days
            FROM exoplanets
            WHERE name LIKE 'TRAPPIST-1 %' AND orbital_period * 365.25 > 7""")),
        ("M", "How many planets did radial velocity find in each year from 2000 to 2005?", sql("""
            SELECT discovery_year, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE detection_method = 'Radial Velocity' AND discovery_year BETWEEN 2000 AND 2005
            GROUP BY discovery_year""")),
        # ---------------------------------------------------------------- hard
        ("H", "What percentage of gas giants outweigh Jupiter?", sql("""
            SELECT 100.0 * SUM(CASE WHEN e.mass_multiplier * r.mass > {JUPITER} THEN 1 ELSE 0 END) / COUNT(*) AS pct_heavier
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.planet_type = 'Gas Giant'"""), "Gas giants without a mass are left out."),
        ("H", "Which planets within 30 light years are more massive than Earth? Give their mass in Earth masses.", sql("""
            SELECT e.name, e.distance, e.mass_multiplier * r.mass / {EARTH} AS mass_earths
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.distance < 30 AND e.mass_multiplier * r.mass > {EARTH}""")),
        ("H", "What are the three least massive gas giants, in Jupiter masses?", sql("""
            SELECT e.name, e.mass_multiplier * r.mass / {JUPITER} AS mass_jupiters
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.planet_type = 'Gas Giant'
            ORDER BY mass_jupiters, e.name
            LIMIT 3""")),
        ("H", "How much planetary mass, in Earth masses, was discovered in each year since 2015?", sql("""
            SELECT e.discovery_year, SUM(e.mass_multiplier * r.mass) / {EARTH} AS total_mass_earths
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.discovery_year >= 2015
            GROUP BY e.discovery_year""")),
        ("H", "Rank the detection methods by how many planets they found in 2016.", sql("""
            SELECT detection_method, COUNT(*) AS planet_count,
                   RANK() OVER (ORDER BY COUNT(*) DESC) AS method_rank
            FROM exoplanets
            WHERE discovery_year = 2016
            GROUP BY detection_method""")),
        ("H", "How many planets had been discovered in total by the end of each year from 2010 onwards?", sql("""
            WITH yearly AS (
                SELECT discovery_year, SUM(COUNT(*)) OVER (ORDER BY discovery_year) AS total_so_far
                FROM exoplanets
                GROUP BY discovery_year
            )
            SELECT discovery_year, total_so_far
            FROM yearly
            WHERE discovery_year >= 2010
            ORDER BY discovery_year"""), "The running total starts with the first discovery, not in 2010."),
        ("H", "Smooth the yearly number of gas giant discoveries with a 3-year moving average.", sql("""
            WITH yearly AS (
                SELECT discovery_year, COUNT(*) AS planet_count
                FROM exoplanets
                WHERE planet_type = 'Gas Giant'
                GROUP BY discovery_year
            )
            SELECT discovery_year, planet_count,
                   AVG(planet_count) OVER (ORDER BY discovery_year ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS moving_avg
            FROM yearly
            ORDER BY discovery_year"""), "Over the last three years with gas giant discoveries."),
        ("H", "For each type of planet, which one is nearest to Earth?", sql("""
            WITH ranked AS (
                SELECT planet_type, name, distance,
                       ROW_NUMBER() OVER (PARTITION BY planet_type ORDER BY distance, name) AS distance_rank
                FROM exoplanets
                WHERE distance IS NOT NULL
            )
            SELECT planet_type, name, distance
            FROM ranked
            WHERE distance_rank = 1"""), "Ties on distance broken by name."),
        ("H", "Which year saw the biggest jump in discoveries over the year before?", sql("""
            WITH yearly AS (
                SELECT discovery_year, COUNT(*) - LAG(COUNT(*)) OVER (ORDER BY discovery_year) AS increase
                FROM exoplanets
                GROUP BY discovery_year
            )
            SELECT discovery_year, increase
            FROM yearly
            ORDER BY increase DESC, discovery_year
            LIMIT 1""")),
        ("H", "Which planets have a more eccentric orbit than any planet found by transit?", sql("""
            SELECT name, eccentricity
            FROM exoplanets
            WHERE eccentricity > (SELECT MAX(eccentricity) FROM exoplanets WHERE detection_method = 'Transit')""")),
        ("H", "What are the planets of the nearest system that has more than three planets?", sql("""
            WITH systems AS (
                SELECT rtrim(substr(name, 1, length(name) - 1)) AS system, MIN(distance) AS distance
                FROM exoplanets
                GROUP BY system
                HAVING COUNT(*) > 3
            )
            SELECT name, distance
            FROM exoplanets
            WHERE rtrim(substr(name, 1, length(name) - 1)) = (
                SELECT system
                FROM systems
                ORDER BY distance, system
                LIMIT 1
            )"""), "A planet's system is its name without the final letter."),
        ("H", "Planets found by which detection method are the heaviest on average, in Jupiter masses?", sql("""
            SELECT e.detection_method, AVG(e.mass_multiplier * r.mass) / {JUPITER} AS avg_mass_jupiters
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            GROUP BY e.detection_method
            ORDER BY avg_mass_jupiters DESC, e.detection_method
            LIMIT 1""")),
        ("H", "Of all planets more massive than Jupiter, what percentage were imaged directly?", sql("""
            SELECT 100.0 * SUM(CASE WHEN e.detection_method = 'Direct Imaging' THEN 1 ELSE 0 END) / COUNT(*) AS pct_direct_imaging
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.mass_multiplier * r.mass > {JUPITER}""")),
        ("H", "Compare the total mass of the Kepler-11 and TRAPPIST-1 systems in Earth masses.", sql("""
            SELECT CASE WHEN e.name LIKE 'Kepler-11 %' THEN 'Kepler-11' ELSE 'TRAPPIST-1' END AS system,
                   SUM(e.mass_multiplier * r.mass) / {EARTH} AS total_mass_earths
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.name LIKE 'Kepler-11 %' OR e.name LIKE 'TRAPPIST-1 %'
            GROUP BY system""")),
        ("H", "For each planet type, what percentage of its planets lie within 1000 light years?", sql("""
            SELECT planet_type,
                   100.0 * SUM(CASE WHEN distance < 1000 THEN 1 ELSE 0 END) / COUNT(*) AS pct_within_1000
            FROM exoplanets
            GROUP BY planet_type"""), "Planets with an unknown distance count as not within 1000 light years."),
        ("H", "Which Kepler-11 planets are heavier than the average planet in that system?", sql("""
            SELECT e.name, e.mass_multiplier * r.mass / {EARTH} AS mass_earths
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.name LIKE 'Kepler-11 %'
              AND e.mass_multiplier * r.mass > (
                  SELECT AVG(e2.mass_multiplier * r2.mass)
                  FROM exoplanets e2
                  JOIN reference_planets r2 ON e2.mass_wrt = r2.name
                  WHERE e2.name LIKE 'Kepler-11 %'
              )""")),
        ("H", "Which planets were the most recent discoveries of each detection method?", sql("""
            WITH ranked AS (
                SELECT detection_method, name, discovery_year,
                       RANK() OVER (PARTITION BY detection_method ORDER BY discovery_year DESC) AS recency_rank
                FROM exoplanets
            )
            SELECT detection_method, name, discovery_year
            FROM ranked
            WHERE recency_rank = 1"""), "All planets from each method's latest year are returned."),
        ("H", "What share of all known planets had been discovered by the end of each year, as a running percentage?", sql("""
            SELECT discovery_year,
                   100.0 * SUM(COUNT(*)) OVER (ORDER BY discovery_year) / (SELECT COUNT(*) FROM exoplanets) AS cumulative_pct
            FROM exoplanets
            GROUP BY discovery_year
            ORDER BY discovery_year""")),
        ("H", "How far away, on average, are the 10 nearest gas giants?", sql("""
            SELECT AVG(distance)
            FROM (
                SELECT distance
                FROM exoplanets
                WHERE planet_type = 'Gas Giant' AND distance IS NOT NULL
                ORDER BY distance, name
                LIMIT 10
            )""")),
        ("H", "For each planet type, how many planets weigh more than 10 Earth masses?", sql("""
            SELECT e.planet_type, COUNT(*) AS planet_count
            FROM exoplanets e
            JOIN reference_planets r ON e.mass_wrt = r.name
            WHERE e.mass_multiplier * r.mass > 10 * {EARTH}
            GROUP BY e.planet_type""")),
        ("H", "Among years with at least 20 discoveries, which had the highest proportion of gas giants?", sql("""
            SELECT discovery_year,
                   1.0 * SUM(CASE WHEN planet_type = 'Gas Giant' THEN 1 ELSE 0 END) / COUNT(*) AS gas_giant_share
            FROM exoplanets
            GROUP BY discovery_year
            HAVING COUNT(*) >= 20
            ORDER BY gas_giant_share DESC, discovery_year
            LIMIT 1""")),
        ("H", "In radial velocity's most productive year, how many planets of each type were found overall?", sql("""
            SELECT planet_type, COUNT(*) AS planet_count
            FROM exoplanets
            WHERE discovery_year = (
                SELECT discovery_year
                FROM exoplanets
                WHERE detection_method = 'Radial Velocity'
                GROUP BY discovery_year
                ORDER BY COUNT(*) DESC, discovery_year
                LIMIT 1
            )
            GROUP BY planet_type"""), "Counts all methods in that year (2022), not only radial velocity."),
    ]


# ----------------------------------------------------------------------------------------- writing
def to_items(rows: list[tuple], prefix: str) -> list[dict]:
    items = []
    for i, row in enumerate(rows, 1):
        _, question, query, *notes = row
        item = {"id": f"{prefix}-{i:03d}", "question": question, "sql": query}
        if notes and notes[0]:
            item["notes"] = notes[0]
        items.append(item)
    return items


def mix(rows) -> dict:
    out: dict[str, int] = {}
    for r in rows:
        out[r[0]] = out.get(r[0], 0) + 1
    return dict(sorted(out.items()))


def strict_ties(db, files) -> list[str]:
    """Ties at a LIMIT cut that only the last ORDER BY key (the tie-breaker) resolves: deterministic,
    but a reader could pick other rows. Re-checks each LIMIT query with its last ORDER BY key dropped."""
    import sqlglot
    from sqlglot import exp

    from sqltune.check import check_items

    stripped = {}
    for fname, items in files.items():
        rows = []
        for it in items:
            tree = sqlglot.parse_one(it["sql"], read="sqlite")
            changed = False
            for node in tree.find_all(exp.Select):
                order = node.args.get("order")
                if node.args.get("limit") is not None and order is not None and len(order.expressions) > 1:
                    order.set("expressions", order.expressions[:-1])
                    changed = True
            if changed:
                rows.append({**it, "sql": tree.sql(dialect="sqlite")})
        stripped[fname] = rows
    rep = check_items(db, stripped)
    return [f"{f.file}/{f.id}: {f.message}" for f in rep.findings if f.kind == "limit_tie"]


def main() -> int:
    from sqltune.check import check_items
    from sqltune.db import default_db
    from sqltune.execute import execute
    from sqltune.score import rows_match

    db = default_db()
    seed = [json.loads(l) for l in SEED.read_text(encoding="utf-8").splitlines() if l.strip()]
    by_q = {r["question"]: r for r in seed}
    train_rows, test_rows = train_items(), test_items()
    # recovered pairs: the restyled SQL must give the original result
    for _, question, query, *_ in recovered_train():
        if question in CORRECTED:
            continue
        original = by_q[question]["sql"]
        a, b = execute(db, original), execute(db, query)
        assert a.ok and b.ok and rows_match(a.rows, b.rows, False), question
    files = {"valid": valid_items(), "train": to_items(train_rows, "train"), "test": to_items(test_rows, "test")}
    for name, items in files.items():
        write_jsonl(OUT / f"{name}.jsonl", items)
    print({k: len(v) for k, v in files.items()}, "train mix", mix(train_rows), "test mix", mix(test_rows))
    report = check_items(db, files)
    for f in report.findings:
        print(f"{f.level:7} {f.file}/{f.id} {f.kind}: {f.message}")
    if "--strict" in sys.argv:
        for line in strict_ties(db, files):
            print("strict", line)
    print(f"{len(report.errors)} errors, {len(report.warnings)} warnings")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
