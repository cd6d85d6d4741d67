"""Where simulated people live: cities with real zip formats, time zones, tax, phone plans.

Why real formats: the importers validate countries (ISO alpha-2) and phones (libphonenumber),
so the demo data must pass the same checks real exports do. Phone numbers use mobile or
geographic ranges that libphonenumber accepts as valid; they are random, not anyone's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

I64 = NDArray[np.int64]


@dataclass(frozen=True)
class City:
    country: str
    name: str
    province: str  # Shopify province code; empty where Shopify leaves it empty
    zip: str
    timezone: str  # IANA
    utc_offset: float  # standard offset in hours, for the hour-of-day rhythm
    tax_rate: float  # added on top of the subtotal
    area_code: str  # NANP area code; empty elsewhere


CITIES: tuple[City, ...] = (
    City("US", "New York", "NY", "10001", "America/New_York", -5, 0.08875, "212"),
    City("US", "Brooklyn", "NY", "11201", "America/New_York", -5, 0.08875, "718"),
    City("US", "Boston", "MA", "02108", "America/New_York", -5, 0.0625, "617"),
    City("US", "Miami", "FL", "33130", "America/New_York", -5, 0.07, "305"),
    City("US", "Atlanta", "GA", "30303", "America/New_York", -5, 0.089, "404"),
    City("US", "Chicago", "IL", "60601", "America/Chicago", -6, 0.1025, "312"),
    City("US", "Austin", "TX", "78701", "America/Chicago", -6, 0.0825, "512"),
    City("US", "Houston", "TX", "77002", "America/Chicago", -6, 0.0825, "713"),
    City("US", "Denver", "CO", "80202", "America/Denver", -7, 0.0881, "303"),
    City("US", "Phoenix", "AZ", "85004", "America/Phoenix", -7, 0.086, "602"),
    City("US", "Seattle", "WA", "98101", "America/Los_Angeles", -8, 0.1035, "206"),
    City("US", "Portland", "OR", "97205", "America/Los_Angeles", -8, 0.0, "503"),
    City("US", "San Francisco", "CA", "94103", "America/Los_Angeles", -8, 0.08625, "415"),
    City("US", "Los Angeles", "CA", "90012", "America/Los_Angeles", -8, 0.095, "213"),
    City("CA", "Toronto", "ON", "M5V 2T6", "America/Toronto", -5, 0.13, "416"),
    City("CA", "Montreal", "QC", "H2X 1Y4", "America/Toronto", -5, 0.14975, "514"),
    City("CA", "Vancouver", "BC", "V6B 1A1", "America/Vancouver", -8, 0.12, "604"),
    City("GB", "London", "", "EC1A 1BB", "Europe/London", 0, 0.20, ""),
    City("GB", "Manchester", "", "M1 1AE", "Europe/London", 0, 0.20, ""),
    City("GB", "Edinburgh", "", "EH1 1YZ", "Europe/London", 0, 0.20, ""),
    City("DE", "Berlin", "BE", "10115", "Europe/Berlin", 1, 0.19, ""),
    City("DE", "Munich", "BY", "80331", "Europe/Berlin", 1, 0.19, ""),
    City("DE", "Hamburg", "HH", "20095", "Europe/Berlin", 1, 0.19, ""),
    City("FR", "Paris", "", "75008", "Europe/Paris", 1, 0.20, ""),
    City("FR", "Lyon", "", "69002", "Europe/Paris", 1, 0.20, ""),
    City("AU", "Sydney", "NSW", "2000", "Australia/Sydney", 10, 0.10, ""),
    City("AU", "Melbourne", "VIC", "3000", "Australia/Melbourne", 10, 0.10, ""),
    City("AU", "Brisbane", "QLD", "4000", "Australia/Brisbane", 10, 0.10, ""),
)

# Mobile prefixes (E.164, without the subscriber digits) and how many digits follow.
MOBILE_PLANS: dict[str, tuple[tuple[str, ...], int]] = {
    "GB": (("+4474", "+4475", "+4478"), 8),
    "DE": (("+49151", "+49152", "+49157", "+49170", "+49176"), 8),
    "FR": (("+3361", "+3362", "+3364", "+3365", "+3366", "+3367", "+3368"), 7),
    "AU": (("+6140", "+6141", "+6142", "+6143", "+6146"), 7),
}

# The store itself (guest orders are shown in its time zone).
STORE_CITY = 0

FIRST_NAMES = [
    "Emma",
    "Olivia",
    "Ava",
    "Sophia",
    "Mia",
    "Amelia",
    "Harper",
    "Evelyn",
    "Abigail",
    "Emily",
    "Ella",
    "Chloe",
    "Grace",
    "Lily",
    "Zoe",
    "Hannah",
    "Nora",
    "Leah",
    "Clara",
    "Julia",
    "Anna",
    "Lea",
    "Camille",
    "Ines",
    "Sofia",
    "Maya",
    "Ruby",
    "Isla",
    "Freya",
    "Liam",
    "Noah",
    "Oliver",
    "Elijah",
    "James",
    "William",
    "Benjamin",
    "Lucas",
    "Henry",
    "Alexander",
    "Jack",
    "Daniel",
    "Samuel",
    "David",
    "Joseph",
    "Leo",
    "Max",
    "Paul",
    "Felix",
    "Jonas",
    "Louis",
    "Hugo",
    "Arthur",
    "Thomas",
    "Oscar",
    "Ethan",
    "Mateo",
    "Aiden",
    "Ryan",
    "Nathan",
    "Adam",
    "Victor",
    "Simon",
    "Mark",
    "Omar",
    "Ravi",
    "Kenji",
]
LAST_NAMES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Walker",
    "Hall",
    "Young",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Hill",
    "Campbell",
    "Mitchell",
    "Roberts",
    "Carter",
    "Phillips",
    "Evans",
    "Turner",
    "Parker",
    "Collins",
    "Edwards",
    "Stewart",
    "Morris",
    "Murphy",
    "Cook",
    "Rogers",
    "Morgan",
    "Cooper",
    "Peterson",
    "Reed",
    "Bailey",
    "Bell",
    "Kelly",
    "Howard",
    "Ward",
    "Cox",
    "Richardson",
    "Wood",
    "Watson",
    "Brooks",
    "Bennett",
    "Gray",
    "Hughes",
    "Price",
    "Sanders",
    "Patel",
    "Nguyen",
    "Kim",
    "Chen",
    "Singh",
    "Muller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Dubois",
    "Bernard",
    "Laurent",
    "Lefebvre",
    "Moreau",
    "Rossi",
]
STREETS = (
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Cedar Ln",
    "Park Rd",
    "Elm St",
    "High St",
    "Church Rd",
    "Station Rd",
    "Hauptstrasse 1",
    "Rue de la Paix",
    "George St",
    "King St",
    "Queen St",
    "Lake Shore Dr",
    "Sunset Blvd",
)
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")


def city_table() -> pl.DataFrame:
    """The cities as a frame, indexed by position (customers carry a city index)."""
    return pl.DataFrame(
        {
            "country": [c.country for c in CITIES],
            "city": [c.name for c in CITIES],
            "province": [c.province for c in CITIES],
            "zip": [c.zip for c in CITIES],
            "timezone": [c.timezone for c in CITIES],
            "utc_offset": [float(c.utc_offset) for c in CITIES],
            "tax_rate": [c.tax_rate for c in CITIES],
        }
    )


def draw_cities(rng: np.random.Generator, n: int, countries: dict[str, float]) -> I64:
    """A city index per person: country by the given shares, then uniform among its cities."""
    codes = list(countries)
    weights = np.array([countries[c] for c in codes], dtype=np.float64)
    country = rng.choice(len(codes), size=n, p=weights / weights.sum())
    by_country = [np.array([i for i, c in enumerate(CITIES) if c.country == k]) for k in codes]
    pick = rng.random(n)
    out = np.empty(n, dtype=np.int64)
    for k, members in enumerate(by_country):
        if not len(members):
            raise ValueError(f"no simulated cities in country {codes[k]}")
        mask = country == k
        out[mask] = members[(pick[mask] * len(members)).astype(np.int64)]
    return out


def draw_phones(rng: np.random.Generator, city: I64) -> pl.Series:
    """A valid-looking E.164 number per person, in their city's numbering plan.

    NANP (US, CA): +1, the city's area code, an exchange 200-999 (not 555 nor N11), 4 digits.
    Elsewhere: a mobile prefix of the country and its subscriber digits.
    """
    n = len(city)
    exchange = rng.integers(200, 1000, size=n)
    exchange = np.where((exchange == 555) | (exchange % 100 == 11), exchange + 1, exchange)
    pick = rng.random(n)
    subscriber = rng.integers(0, 100_000_000, size=n)
    # Per city: its prefixes (NANP: "+1" + area code) and the digits that follow.
    prefix_table: list[str] = []
    first = np.zeros(len(CITIES), dtype=np.int64)
    count = np.zeros(len(CITIES), dtype=np.int64)
    width = np.zeros(len(CITIES), dtype=np.int64)
    for i, c in enumerate(CITIES):
        prefixes, digits = MOBILE_PLANS.get(c.country, ((f"+1{c.area_code}",), 7))
        first[i], count[i], width[i] = len(prefix_table), len(prefixes), digits
        prefix_table.extend(prefixes)
    nanp = np.array([c.country in ("US", "CA") for c in CITIES])[city]
    prefix = first[city] + (pick * count[city]).astype(np.int64)
    row_width = width[city]
    number = np.where(
        nanp, exchange * 10_000 + subscriber % 10_000, subscriber % np.power(10, row_width)
    )
    frame = pl.DataFrame(
        {"prefix": pl.Series(prefix_table).gather(prefix), "number": number, "width": row_width}
    )
    return frame.select(
        pl.concat_str(
            pl.col("prefix"), pl.col("number").cast(pl.String).str.zfill(pl.col("width"))
        ).alias("phone")
    )["phone"]
