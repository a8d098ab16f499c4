#!/usr/bin/env python3
"""Generate the default task data for alignflow's "controlled positive sentiment" task.

Why this exists
---------------
The default task follows the IMDb experiment of the DPO paper (Rafailov et al., 2023): a policy
model is given the opening of a movie review and has to continue it, and the gold reward is the
VADER compound sentiment (``vaderSentiment``) of the continuation. The pipeline therefore needs

* review openings to use as prompts for sampling, preference pairs and evaluation, and
* a small set of demonstrations (opening + continuation) for the SFT stage that comes first.

Real IMDb reviews cannot be vendored into the repository, so this script writes a stand-in made of
natural English from hand-written pools: invented film titles, invented people, premises, settings,
viewing situations and about 180 distinct opening skeletons. There is no random-token filler; every
line is a plausible sentence from a movie review.

Openings are written to be sentiment-neutral (no praise or complaint in the prompt), so that the
continuation decides the sentiment; many end mid-thought (", and", "who", "is", ...). SFT
demonstrations use only openings that end a sentence, end with a colon, or end with "and"/"but";
their continuations are of mixed sentiment (about 40% negative, 35% positive, 25% mixed/neutral)
so the SFT model can write in either direction before preference learning pushes it one way.

Outputs (UTF-8 JSON Lines, one object per line) in ``data/raw/``:

* ``prompts_train.jsonl`` -- ``{"id": "train-0001", "prompt": ...}``
* ``prompts_eval.jsonl``  -- ``{"id": "eval-0001", "prompt": ...}``; no opening is shared with
  train, and near-identical openings are rejected within and across all files.
* ``sft.jsonl``           -- ``{"id": "sft-0001", "prompt": ..., "completion": ...}``

A prompt never ends with whitespace and a completion never starts with one; the intended full text
is ``prompt + " " + completion``.

The script uses only the standard library, needs no network and is deterministic (fixed seed):
running it again rewrites byte-identical files. Run it from the repository root with::

    python data/make_default_task.py            # writes data/raw/*.jsonl
    python data/make_default_task.py --out DIR  # writes the three files into DIR instead
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import string
from pathlib import Path

SEED = 20230529
N_TRAIN = 440
N_EVAL = 120
N_SFT = 340
SFT_MIX = (("negative", 0.40), ("positive", 0.35), ("mixed", 0.25))
OPENING_WORDS = (8, 40)
COMPLETION_WORDS = (15, 60)
NEAR_DUP_RATIO = 0.75  # difflib ratio above which two openings count as near-identical

# --------------------------------------------------------------------------------------------
# Films: genres, premises and the names used to build a small invented catalogue.
# A premise is (protagonist, link word, action, setting); "about" = protagonist + link + action.
# --------------------------------------------------------------------------------------------

GENRES: dict[str, dict] = {
    "drama": {
        "labels": ["drama", "family drama", "character study", "chamber drama"],
        "plural": "dramas",
        "beats": ["big dramatic scenes", "confrontation scenes", "quiet domestic scenes"],
        "premises": [
            ("a retired lighthouse keeper", "who", "is asked to train his replacement over one long winter",
             "a rocky island off the coast of Maine"),
            ("a middle-aged pharmacist", "who", "moves back into her childhood home to look after her father",
             "a mill town in western Pennsylvania"),
            ("two brothers", "who", "drive their late mother's piano across three states",
             "the back roads of the American Midwest"),
            ("a night-shift nurse", "who", "starts writing letters to a patient she has never met",
             "a hospital on the outskirts of Glasgow"),
            ("a small-town mayor", "who", "tries to keep the local paper mill open for one more year",
             "a logging town in northern Ontario"),
            ("a former concert violinist", "who", "takes a job tuning pianos in a seaside town",
             "a seaside town on the Normandy coast"),
            ("a farmer", "who", "rents his spare room to a surveyor from the city",
             "a sheep farm in the Welsh hills"),
            ("three generations of a fishing family", "who", "gather for a wedding that nobody saw coming",
             "a harbor town in Newfoundland"),
        ],
    },
    "comedy": {
        "labels": ["comedy", "ensemble piece", "small-town caper", "family road movie"],
        "plural": "comedies",
        "beats": ["jokes", "running gags", "comic set pieces"],
        "premises": [
            ("a very particular wedding planner", "who", "has to organize her ex-husband's third wedding",
             "a country club in suburban Atlanta"),
            ("a part-time magician", "who", "inherits a llama from a distant uncle",
             "a cul-de-sac in suburban Ohio"),
            ("two rival food-truck owners", "who", "end up with one parking spot between them for a whole summer",
             "a downtown street in Austin"),
            ("a substitute teacher", "who", "ends up enrolled in his own night class",
             "a community college in New Jersey"),
            ("a family of five", "who", "attempt a road trip in a camper van held together with tape",
             "the highways between Denver and Santa Fe"),
            ("a soft-spoken accountant", "who", "is booked in place of a famous motivational speaker",
             "a convention hotel in Las Vegas"),
            ("a retired couple", "who", "open a bed-and-breakfast with no idea how to run one",
             "a village in the Cotswolds"),
            ("an aging rock drummer", "who", "moves in with his daughter and her very organized fiance",
             "a tidy apartment in Minneapolis"),
        ],
    },
    "thriller": {
        "labels": ["thriller", "surveillance thriller", "political thriller"],
        "plural": "thrillers",
        "beats": ["twists", "chase sequences", "reveals"],
        "premises": [
            ("a translator", "who", "stumbles onto a recording she was never supposed to hear",
             "Brussels in the middle of winter"),
            ("an insurance investigator", "who", "looks into a string of fires along the river",
             "a river town in Louisiana"),
            ("a courier", "who", "realizes the package he is carrying is being followed across the city",
             "the streets of Istanbul"),
            ("a night-desk journalist", "who", "receives a phone call that appears to come from her own number",
             "a newsroom in Baltimore"),
            ("a hotel concierge", "who", "notices that one guest has checked in under five different names",
             "an old hotel on the Danube in Budapest"),
            ("a bank auditor", "who", "finds a discrepancy that leads back to her own department",
             "a glass office tower in Frankfurt"),
            ("a ferry captain", "who", "discovers a stowaway who knows far too much about him",
             "the ferry routes of the Greek islands"),
        ],
    },
    "horror": {
        "labels": ["supernatural film", "chiller", "ghost story"],
        "plural": "supernatural films",
        "beats": ["scares", "jump scares", "creepy set pieces"],
        "premises": [
            ("a young couple", "who", "move into a farmhouse where every clock runs backward",
             "a farmhouse in rural Iowa"),
            ("a night watchman", "who", "hears voices on the radio of a closed department store",
             "a department store in 1970s Chicago"),
            ("a group of college roommates", "who", "rent a cabin that does not appear on any map",
             "the forests of northern Michigan"),
            ("a sound engineer", "who", "keeps finding an extra voice on her recordings",
             "a recording studio in Nashville"),
            ("a family", "who", "inherit a boarding house with one room that stays locked",
             "a boarding house in coastal Oregon"),
            ("a lighthouse crew", "who", "hear nothing from the mainland during a week of fog",
             "a lighthouse in the Outer Hebrides"),
            ("a children's author", "who", "finds her illustrations changing overnight",
             "a cottage in the Lake District"),
        ],
    },
    "scifi": {
        "labels": ["science fiction film", "sci-fi drama", "space drama"],
        "plural": "science fiction films",
        "beats": ["effects sequences", "space sequences", "big ideas"],
        "premises": [
            ("a maintenance engineer", "who", "receives a transmission from a ship that left forty years ago",
             "a mining station on one of Saturn's moons"),
            ("a botanist", "who", "wakes up on a generation ship two centuries too early",
             "a generation ship halfway between stars"),
            ("a linguist", "who", "is hired to teach English to a machine that insists it already speaks it",
             "a research campus in near-future Seoul"),
            ("two astronauts", "who", "spend eighteen months orbiting Mars on a cramped station",
             "a research station in orbit around Mars"),
            ("a census worker", "who", "discovers that an entire town is living one day ahead of everyone else",
             "a desert town in New Mexico"),
            ("a retired pilot", "who", "is offered a procedure that would copy his memories into a younger body",
             "a clinic in a near-future Singapore"),
            ("a teenager", "who", "builds a radio that picks up broadcasts from the past",
             "a partly flooded future London"),
        ],
    },
    "romance": {
        "labels": ["relationship drama", "two-hander", "courtship drama"],
        "plural": "relationship dramas",
        "beats": ["courtship scenes", "scenes between the two leads", "long conversations"],
        "premises": [
            ("a bookbinder and a ferry mechanic", "who", "keep running into each other on the same morning crossing",
             "the harbor ferries of Helsinki"),
            ("two strangers", "who", "are seated together at a wedding where neither knows the couple",
             "a vineyard outside Cape Town"),
            ("a chef", "who", "crosses paths with her high-school boyfriend over a summer in Lisbon",
             "the old quarter of Lisbon"),
            ("a piano tuner", "who", "gets to know the owner of a music shop that is about to close",
             "a side street in Montreal"),
            ("a pair of translators", "who", "exchange notes in the margins of the same manuscript",
             "a publishing house in Buenos Aires"),
            ("two night-shift workers", "who", "meet every evening at the same bus stop",
             "an industrial district of Osaka"),
        ],
    },
    "documentary": {
        "labels": ["documentary", "observational documentary", "feature-length documentary"],
        "plural": "documentaries",
        "beats": ["interviews", "archival sequences", "observational scenes"],
        "premises": [
            ("the last family-run glassworks in Ohio", "as it", "tries to keep its furnaces lit for one more year",
             "a small town in eastern Ohio"),
            ("a club of amateur astronomers", "as they", "track a comet through one southern winter",
             "the high desert of northern Chile"),
            ("a crossword constructor", "as he", "prepares for a national tournament",
             "a cramped apartment in Queens"),
            ("a small-town radio station", "as it", "broadcasts through its final year on the air",
             "a prairie town in Saskatchewan"),
            ("the beekeepers of a Greek island", "as they", "adapt to hotter summers",
             "the island of Ikaria"),
            ("a ninety-year-old tailor", "as he", "makes his last suit",
             "a tailor's shop in Naples"),
            ("a team of volunteers", "as they", "rebuild a 1920s carousel piece by piece",
             "a lakeside park in Wisconsin"),
        ],
    },
    "animation": {
        "labels": ["animated feature", "animated film", "stop-motion feature"],
        "plural": "animated films",
        "beats": ["visual gags", "musical numbers", "action sequences"],
        "premises": [
            ("a paper crane", "that", "tries to find its way back to the girl who folded it",
             "a windy port city"),
            ("a young raccoon", "who", "wants a seat in the city's night orchestra",
             "the rooftops of a big city"),
            ("a lighthouse made of clockwork", "that", "decides to walk inland",
             "a storybook coastline"),
            ("an elderly dragon", "who", "runs the post office in a mountain village",
             "a mountain village above the clouds"),
            ("two snails", "who", "set out to cross a garden before the first frost",
             "an overgrown back garden"),
            ("a mouse", "who", "builds a hot-air balloon out of a teacup and a sock",
             "the attic of an old house"),
        ],
    },
    "western": {
        "labels": ["western", "revisionist western", "frontier drama"],
        "plural": "westerns",
        "beats": ["standoffs", "horseback sequences", "saloon scenes"],
        "premises": [
            ("an aging sheriff", "who", "is asked to escort a witness across the desert to testify",
             "the Sonoran Desert in the 1880s"),
            ("a rancher", "who", "hires a drifter for the autumn cattle drive",
             "the high plains of Wyoming"),
            ("a traveling dentist", "who", "arrives in a mining town with a secret",
             "a silver-mining town in Nevada"),
            ("two sisters", "who", "try to hold on to their land after the railroad comes through",
             "the Kansas prairie in the 1870s"),
            ("a telegraph operator", "who", "intercepts a message meant for the town banker",
             "a railroad town in Colorado"),
            ("a former cavalry scout", "who", "guides a surveying crew into the mountains",
             "the Bitterroot Mountains"),
        ],
    },
    "musical": {
        "labels": ["musical", "music drama", "backstage musical"],
        "plural": "musicals",
        "beats": ["songs", "musical numbers", "dance sequences"],
        "premises": [
            ("a cruise-ship singer", "who", "gets one night to audition for a Broadway producer",
             "a cruise ship docked in New York"),
            ("a choir of retired steelworkers", "that", "enters a national competition",
             "a steel town in South Yorkshire"),
            ("a jazz pianist", "who", "returns to New Orleans to settle his father's affairs",
             "the French Quarter of New Orleans"),
            ("a street-corner busker", "who", "becomes an overnight sensation on the radio",
             "the subway stations of Philadelphia"),
            ("a school music teacher", "who", "stages an opera in a gymnasium",
             "a public high school in Detroit"),
            ("a family band", "that", "tours the Midwest in a converted school bus",
             "small towns across Nebraska and Iowa"),
        ],
    },
    "mystery": {
        "labels": ["mystery", "whodunit", "detective story"],
        "plural": "mysteries",
        "beats": ["clues", "red herrings", "interrogation scenes"],
        "premises": [
            ("a retired schoolteacher", "who", "looks into a disappearance at her village flower show",
             "a village in Norfolk"),
            ("a hotel detective", "who", "has one night to track down a necklace that vanished from a guest's room",
             "an old hotel in San Francisco"),
            ("a crossword editor", "who", "notices clues in the puzzles that point to a real case",
             "a newspaper office in Boston"),
            ("a pair of rival novelists", "who", "are snowed in at a country house when their host vanishes",
             "a country house in the Scottish Borders"),
            ("a small-town police clerk", "who", "reopens a case that was closed twenty years ago",
             "a county seat in Kentucky"),
            ("a museum archivist", "who", "finds a letter hidden inside a donated painting",
             "a municipal museum in Antwerp"),
        ],
    },
    "period": {
        "labels": ["period drama", "costume drama", "period piece"],
        "plural": "period dramas",
        "beats": ["ballroom scenes", "dinner-table scenes", "costume changes"],
        "premises": [
            ("a governess", "who", "becomes caught up in her employer's political ambitions",
             "Vienna in the 1890s"),
            ("the daughter of a shipbuilder", "who", "wants to design boats herself",
             "Victorian Glasgow"),
            ("a court painter", "who", "is commissioned to paint a queen who refuses to sit still",
             "an eighteenth-century royal court"),
            ("a family of silk merchants", "who", "move from Lyon to London",
             "London in the 1840s"),
            ("a young clerk", "who", "keeps a second ledger that nobody else knows about",
             "Amsterdam in the 1650s"),
            ("a lady's maid", "who", "keeps a diary of everything that happens in the household",
             "a country estate in Edwardian England"),
        ],
    },
    "action": {
        "labels": ["action film", "action thriller", "heist picture"],
        "plural": "action films",
        "beats": ["action sequences", "car chases", "stunts"],
        "premises": [
            ("a former stunt driver", "who", "is pulled into one last job",
             "the harbor district of Marseille"),
            ("a bodyguard", "who", "has to get a witness across the city before dawn",
             "a sprawling, rain-soaked Manila"),
            ("an off-duty firefighter", "who", "is caught on the fortieth floor of a skyscraper during a blackout",
             "a skyscraper in downtown Toronto"),
            ("a retired ferry pilot", "who", "goes back to running cargo across the strait for her nephew's sake",
             "the coastal towns of southern Spain"),
            ("a cargo pilot", "who", "has to land a plane with one engine out on a frozen lake",
             "the Canadian far north"),
            ("a safecracker", "who", "is hired to open a vault that has been sealed since 1961",
             "a bank building in East Berlin"),
        ],
    },
    "coming_of_age": {
        "labels": ["coming-of-age story", "coming-of-age film", "teen drama"],
        "plural": "coming-of-age films",
        "beats": ["school scenes", "summer-vacation scenes", "family dinner scenes"],
        "premises": [
            ("a fourteen-year-old", "who", "spends the summer working at her uncle's roadside motel",
             "a roadside motel in Arizona"),
            ("three boys", "who", "set out to find a meteorite that landed somewhere in the county",
             "a farming county in 1980s Nebraska"),
            ("a high-school senior", "who", "secretly enters a regional baking competition",
             "a suburb of Manchester"),
            ("a teenage lifeguard", "who", "keeps a record of every swimmer at the town pool",
             "a small town in Georgia during a heat wave"),
            ("two cousins", "who", "are sent to spend a year with their grandmother",
             "a hillside village in Sicily"),
            ("a trumpet player", "who", "joins the marching band in his final year of school",
             "a high school in Houston"),
        ],
    },
    "fantasy": {
        "labels": ["fantasy film", "quest film", "fairy tale"],
        "plural": "fantasy films",
        "beats": ["creature designs", "magic sequences", "quest scenes"],
        "premises": [
            ("an apprentice mapmaker", "who", "discovers that the maps she draws become real",
             "a walled city of canals and bridges"),
            ("a knight", "who", "has never finished a single tournament",
             "a kingdom of marshes and windmills"),
            ("a witch", "who", "runs a laundromat in a town that does not believe in magic",
             "a rainy town in the Pacific Northwest"),
            ("a boy", "who", "can talk to the weather",
             "a farming valley at the edge of a vast forest"),
            ("a royal librarian", "who", "has to return a book that was borrowed three hundred years ago",
             "a library that stretches underneath an entire city"),
            ("a ferryman", "who", "carries travelers across a river that only appears at night",
             "a river kingdom wrapped in fog"),
        ],
    },
}

TITLES = [
    "The Lantern Keeper", "Salt and Cinders", "Northbound Quiet", "The Glass Orchard", "Harrow Street",
    "A Map of Small Rooms", "Paper Harbor", "The Ninth Winter", "Copper Tide", "Fenland Hymn",
    "The Cartographer's Daughter", "Static on Channel Four", "Blue Hour at Marlow's", "The Orchard Road",
    "Ironwood Crossing", "Tuesday's Ferry", "The Long Field", "Midnight at the Pemberton", "Velvet Arithmetic",
    "The Clockmaker's Apprentice", "Second Harvest", "The Weight of Rivers", "Signal Hill",
    "Whistler's Crossing", "The Quiet Engine", "Borrowed Light", "Seven Lanterns", "The Tin Cathedral",
    "Driftwood County", "A Season in Calloway", "The Understudy's Notebook", "Parallel Avenue",
    "The Last Ferry to Orin", "Chalk Lines", "Tangerine Summer", "The Archivist of Vell", "Ember Falls",
    "Slow Weather", "The Surveyor", "Hollow Bay", "The Night Shift at Grady's", "Orbit of Small Things",
    "The Beekeeper's Year", "Canal Street Waltz", "North of Kestrel", "The Button Factory",
    "The Paper Crown", "Marigold Junction", "The Stone Garden", "The Ferryman's Ledger", "Half Past Nowhere",
    "The Winter Tenant", "Rust Belt Lullaby", "The Opal Coast", "Lighthouse Nine", "The Brass Compass",
    "Kingfisher Lane", "The Tailor of Vellmar", "A House on Cedar Hill", "Echo Ridge", "The Seventh Passenger",
    "Longshore", "The Salt Road", "Juniper and Ash", "The Watchmaker's Son", "Moth Season",
    "The Distance Between Towers", "The Marrow Street Tapes", "Quarry Town", "Fennimore's Rules",
    "The Orange Room", "Tidewater Radio", "A Ladder for Margot", "The Sunday Census", "Blackberry Hill",
    "The Ostrander Inheritance", "Wintering", "The Cellist Next Door", "Fog Line", "The Twelfth Floor",
    "Old Harbor Road", "The Mapless Country", "Greywater", "Lantern Season", "The Willow Clause",
    "A Room Above the Bakery", "The Kite Maker", "Small Engines", "The Pale Meridian", "Harbor Lights Motel",
    "The Carousel Men", "Morning Crossing", "The Quarry Choir", "The Leaning House", "Twelve Mile Road",
    "The Postmaster of Kell", "Thistledown", "The Almanac", "Saltmarsh Radio", "The Heron's Bargain",
    "Ashgrove", "The Ninety-Day Summer", "Copperhead Valley", "The Ticket Collector",
]

EARLIER_TITLES = [
    "Birch Street", "The Ledger Keeper", "Oyster Season", "Nine Doors", "The Cold Orchard", "Fairweather Road",
    "The Telegraph Girls", "Midway", "A Kitchen in Lyon", "The Ropewalk", "Marsh Country", "The Lamplighter",
    "Sparrow Hall", "Eastbound", "The Roof Garden", "Pilgrim Street",
]

FIRST_NAMES = [
    "Mara", "Tobias", "Ines", "Dariusz", "Hana", "Felix", "Priya", "Julien", "Noor", "Sunniva", "Rafael",
    "Keiko", "Elena", "Owen", "Lucia", "Samir", "Greta", "Idris", "Maren", "Augustin", "Thea", "Cosmo",
    "Dalia", "Viktor", "Rosalind", "Milo", "Yusuf", "Clementine", "Anselm", "Bea", "Teodor", "Wren",
    "Lorcan", "Ottilie", "Casimir", "Esme", "Hollis", "Adaeze", "Jonah", "Marisol", "Bram", "Saoirse",
    "Nikolai", "Imogen", "Tariq", "Linnea", "Callum", "Odile", "Emeka", "Freya", "Ansel", "Delphine",
    "Rohan", "Petra", "Silas", "Yara", "Magnus", "Colette", "Anders", "Ayo", "Perpetua", "Leopold",
]

SURNAMES = [
    "Quell", "Wren", "Okafor-Lund", "Keller", "Morrow", "Arden", "Castellan", "Havel", "Abernathy", "Hale",
    "Ostrander", "Vance", "Marsh-Tully", "Petrakis", "Brandt", "Delacroix", "Vollmer", "Calloway", "Sato",
    "Pell", "Lindqvist", "Reyes", "Fenwick", "Anand", "Terranova", "Kowalczyk", "Dunne", "Valdivia",
    "Matsuda", "Ferreira", "Pryce", "Moreau", "Achterberg", "Ibsen-Hart", "Nakamura-Reid", "Tolliver",
    "Sandoval", "Whitlock", "Ekwueme", "Halvorsen", "Marchetti", "Dubrovsky", "Quinlan", "Oyelaran",
    "Stroud", "Vasquez-Lowe", "Mbeki-Shaw", "Thorne", "Lachance", "Rask", "Okonjo", "Greaves", "Falk",
    "Ambrose", "Castellanos", "Kilbride", "Szabo", "Penhaligon", "Rourke", "Tamsin", "Varley", "Yildiz",
]

RUNTIMES = [  # (noun phrase, adjective, long?)
    ("eighty-five minutes", "eighty-five-minute", False),
    ("ninety minutes", "ninety-minute", False),
    ("a hundred minutes", "hundred-minute", False),
    ("an hour and fifty minutes", "110-minute", False),
    ("two hours", "two-hour", True),
    ("two hours and ten minutes", "two-hour", True),
    ("two and a half hours", "two-and-a-half-hour", True),
    ("nearly three hours", "three-hour", True),
]

ORDINALS = ["second", "third", "fourth", "fifth", "sixth"]

FESTIVALS = [
    "the Harbourlight Film Week", "the Cedar Valley Film Days", "the Aldermoor International Film Week",
    "the Riverside Independent Showcase", "the Salt Flats Film Week", "the Pinecrest Screen Forum",
    "the Lakeshore Film Days", "the Eastgate Cinema Week", "the Copperline Film Festival",
    "the Northwater Showcase of New Cinema",
]

SOURCES = [
    "a 1970s book by Ruth Calder", "a short story by Emil Varga", "a stage drama that ran for years in Dublin",
    "a memoir by a former ship's cook", "a podcast series from a few years ago", "a graphic novel by Tomas Reid",
    "a radio drama from the 1950s", "a children's book by Ada Pruitt", "a long magazine article",
    "a book that everyone in Poland read in the 1980s", "an out-of-print travel diary",
]

SHOOT_LOCATIONS = [
    "Portugal", "northern Scotland", "the Atacama Desert", "rural Quebec", "Tbilisi", "a single sound stage in Budapest",
    "upstate New York", "New Mexico", "the Faroe Islands", "Tasmania", "the Basque Country", "Newfoundland",
]
SHOOT_TIMES = ["six weeks", "a single summer", "twenty-two days", "three winters", "eighteen months", "nine weeks"]

# --------------------------------------------------------------------------------------------
# Per-opening colour: how, where and with whom the reviewer watched, and small production facts.
# --------------------------------------------------------------------------------------------

SITUATIONS = [
    "on a rainy Sunday afternoon", "on a Tuesday night after work", "during a snowstorm",
    "on the first night of a long weekend", "at a midnight screening", "on a weeknight when I could not sleep",
    "on New Year's Day", "on a hot August evening", "the night before a job interview", "on my day off",
    "over two evenings", "at a Saturday matinee", "on a quiet Thursday", "the week it came out",
    "on opening night", "on a cold February night", "at an early-morning press screening", "on a slow Monday",
    "on the last night of a family visit", "after a double shift", "on a Sunday morning",
    "during the first week of spring",
]

COMPANIONS = [
    "with my brother", "with my younger sister", "with my dad", "with my roommate", "with two coworkers",
    "with my book club", "with my partner", "with my grandmother", "with my teenage kids",
    "with a neighbor from down the hall", "with my cousin", "with an old college roommate", "with my film club",
    "with my wife", "with my husband", "with my mother-in-law", "with my aunt and uncle",
]

VENUES = [
    "the Rialto downtown", "a drive-in outside of town", "the old Bijou on Fifth Street",
    "a repertory theater across town", "the multiplex by the highway", "a campus film society screening",
    "the Roxy", "a small arthouse cinema", "the library's Friday night screening", "an outdoor screening by the river",
    "the Majestic on Main Street",
]

MEDIUMS = [
    "on a laptop during a long bus ride", "on the seatback screen of a red-eye flight",
    "on my phone on a train across Germany", "on a tablet in a hospital waiting room", "on a tiny hotel television",
    "on a borrowed projector in my backyard",
]

RECOMMENDERS = [
    "a coworker", "my sister", "an old college roommate", "my barber", "the guy at the video store",
    "my neighbor", "a former film professor of mine", "my mom", "someone in my running club", "my dentist",
    "a stranger on a film forum", "my book club",
]

RELATIVES = [
    "brother", "sister", "dad", "mom", "grandmother", "uncle", "roommate", "partner", "wife", "husband",
    "cousin", "daughter", "son", "aunt",
]

WHENS = [
    "last weekend", "two nights ago", "on Friday", "last night", "over Thanksgiving weekend", "earlier this week",
    "a few days ago", "this past Saturday", "last month", "on Sunday",
]

OPENING_IMAGES = [
    "a long shot of an empty highway", "a close-up of a ticking kitchen clock", "a woman counting coins at a kitchen table",
    "a ferry pulling away from a dock in the fog", "a child reading a weather report out loud",
    "an overhead shot of a parking lot at dawn", "a man tuning a piano in a concert hall after hours",
    "a radio crackling in a dark room", "a slow pan across a crowded train platform", "a pair of hands shuffling cards",
    "a wedding photograph on a mantelpiece", "a dog waiting by a closed gate",
]

POSTER_IMAGES = [
    "a single red umbrella on an empty beach", "two faces reflected in a train window", "a house drawn in chalk",
    "a row of lit windows in a dark apartment building", "a bicycle leaning against a lighthouse",
    "an old brass key on a length of string",
]

SMALL_PLACES = [
    "a single apartment", "a roadside diner", "the cabin of a fishing boat", "a hospital waiting room",
    "a moving train", "a high-school gym", "one street corner", "a laundromat", "a hotel lobby", "a parked car",
]

TIMEFRAMES = ["weekend", "night", "summer", "winter", "school year", "week in August", "day"]

AUDIENCES = [
    "retirees", "college students", "families with small kids", "people who seemed to know the director",
    "film reviewers with notebooks", "teenagers on a Friday night",
]

HABITS = [
    "reads the plot summary beforehand", "only watches documentaries", "talks through every film",
    "guesses the ending in the first ten minutes", "watches everything with subtitles on",
]

MUSIC_DESCS = [
    "an old Portuguese folk song", "a single cello", "a crackling radio broadcast", "a children's choir",
    "a drum machine and not much else", "a scratchy jazz record",
]

REPUTATIONS = [
    "long, quiet takes", "casting non-professional actors", "shooting on real locations",
    "unusual story structures", "films that run past the two-hour mark", "working with the same small crew",
]

TONE_PAIRS = [
    ("deadpan comedy", "quiet melodrama"), ("family drama", "ghost story"), ("slapstick", "social commentary"),
    ("road movie", "chamber piece"), ("procedural", "fable"), ("satire", "romance"),
]

DECADES = ["1960s", "1970s", "1980s", "1990s"]

# --------------------------------------------------------------------------------------------
# Opening skeletons. Kinds: "S" ends a sentence, "K" ends with a colon, "C" ends with "and"/"but"
# (any independent clause can follow), "O" ends mid-phrase. SFT uses S, K and C only.
# Fields come from the film and the per-opening context; a capitalised field name ({Recommender})
# capitalises the value. Documentaries have no {actor}/{actor2}, so those skeletons skip them.
# --------------------------------------------------------------------------------------------

OPENINGS: list[tuple[str, str]] = [
    # complete sentences
    ("S", "{title} follows {about}."),
    ("S", "At its core, {title} is the story of {about}."),
    ("S", "Set in {setting}, {title} is the {ordinal} feature from {director}."),
    ("S", "{title} is {a_genre} about {about}."),
    ("S", "I caught a late showing of {title} {when} {companion}."),
    ("S", "I finally got around to watching {title} {situation}, after it sat in my queue for months."),
    ("S", "{title} premiered at {festival} last year and is now showing in a handful of theaters."),
    ("S", "{director}'s new film, {title}, runs {runtime} and is set almost entirely in {setting}."),
    ("S", "I watched {title} {situation} {companion}, mostly because it was already queued up."),
    ("S", "In {director}'s {title}, {actor} is cast as {about}."),
    ("S", "{title} is adapted from {source}, and {director} keeps most of its structure."),
    ("S", "My {relative} and I saw {title} at {venue} {when}."),
    ("S", "The new {genre} from {director} opens with {opening_image}."),
    ("S", "{title} was shot in {location} over {shoot_time}, on what the press notes call a modest budget."),
    ("S", "I went to see {title} at {venue} without reading a single review."),
    ("S", "I knew nothing about {title} before the lights went down, not even that it was {a_genre}."),
    ("S", "{director} spent nearly a decade trying to get {title} made, and it finally opened {when}."),
    ("S", "{title} is {director}'s first film in almost ten years, and the first one set in {setting}."),
    ("S", "Much has been written about {title} since it opened, most of it about {actor}."),
    ("S", "{title} is {a_runtime_adj} {genre} set in {setting}."),
    ("S", "{actor} is in nearly every scene of {title}, {a_runtime_adj} {genre} from {director}."),
    ("S", "This is the {ordinal} time {director} has worked with {actor}, this time on {a_genre} called {title}."),
    ("S", "The story of {title} unfolds over a single {timeframe} in {setting}."),
    ("S", "Most of {title} takes place in {small_place}, and most of it is just {actor} and {actor2} talking."),
    ("S", "{title} is told largely in flashback, from the point of view of {head}."),
    ("S", "{title} marks the first leading role for {actor}, who until now has mostly had small parts."),
    ("S", "I watched {title} twice this week, once by myself and once {companion}."),
    ("S", "Everyone in my family came away from {title} with a different take when we watched it {when}."),
    ("S", "{title} arrives in theaters after months of screenings in other cities, starting at {festival}."),
    ("S", "This {runtime_adj} {genre} from {director} centers on {about}."),
    ("S", "{title} is a remake of a little-seen {decade} {genre} with the same name and much the same plot."),
    ("S", "{title} is the {ordinal} feature from {director}, who previously made {title2}."),
    ("S", "The poster for {title} shows {poster_image}, which tells you almost nothing about the film."),
    ("S", "I saw {title} at {festival} in a packed hall, and I have been turning it over ever since."),
    ("S", "{title} is {a_genre} from {director} with {actor} and {actor2} in the leading roles."),
    ("S", "The film is called {title}, and it follows {about}."),
    ("S", "There is almost no music in {title} apart from {music_desc} over the title sequence."),
    ("S", "{title} is the sort of {genre} that begins with {opening_image} and takes its time from there."),
    ("S", "{director} shot {title} in {location}, though the story is set in {setting}."),
    ("S", "I was one of six people at the {when_time} showing of {title} {when}."),
    ("S", "Before {title}, I had never seen anything by {director}."),
    ("S", "{title} has been described as {a_genre}, but it is really a film about {head}."),
    ("S", "The trailer for {title} gives away very little about {head}, and neither will I."),
    ("S", "{title} is the {genre} that everyone at my office has been talking about since {when}."),
    ("S", "My {relative}, who {habit}, watched {title} with me {when}."),
    ("S", "I rented {title} {when} purely because of its poster, which shows {poster_image}."),
    ("S", "The screenplay for {title} was written by {writer}, based on {source}."),
    ("S", "{title} runs {runtime}, and {actor} is on screen for almost all of it."),
    ("S", "I watched {title} {medium}, which is probably not how {director} intended it to be seen."),
    ("S", "Here is another {genre} about {head}, this one from {director}."),
    ("S", "{title} was the opening-night film at {festival} this year."),
    ("S", "{title} is set over one {timeframe}, and almost all of it is seen through the eyes of {head}."),
    ("S", "The cast of {title} is led by {actor}, with {actor2} in a smaller role."),
    ("S", "I went to {title} because {recommender} kept bringing it up."),
    ("S", "We picked {title} for movie night {when} because nobody in the house had heard of it."),
    ("S", "The music for {title} is by {composer}, and the cinematography is by {dp}."),
    ("S", "{title} is set in {setting}, and the place matters as much as any of the characters."),
    ("S", "Two people walked out of my screening of {title}, and about forty stayed until the lights came up."),
    # ending with a colon
    ("K", "Here is what I can tell you about {title}, the new {genre} from {director}, after one viewing:"),
    ("K", "Everyone keeps asking me what I thought of {title}, so here it is:"),
    ("K", "A few thoughts on {title}, which I saw {situation}:"),
    ("K", "My short review of {director}'s {title}, the {genre} about {head}:"),
    ("K", "I saw {title} {situation} {companion}, and here is where I landed:"),
    ("K", "The question everyone asks about {title} is whether it matches the buzz, and my answer is this:"),
    ("K", "I told {recommender} I would write up my thoughts on {title}, so here goes:"),
    ("K", "If you are wondering whether to see {title}, {a_runtime_adj} {genre} from {director}, here is my take:"),
    ("K", "I took notes during {title} at {venue}, and this is what they add up to:"),
    ("K", "{title}, the new {genre} from {director}, in a few sentences:"),
    ("K", "I saw the {when_time} showing of {title} {when}, slept on it, and this is what I think:"),
    ("K", "For anyone deciding between {title} and whatever else is showing at {venue} this week:"),
    ("O", "I have one main thing to say about {actor} in {title}:"),
    ("K", "So, {title}, the {genre} everyone at {festival} was talking about:"),
    # ending with "and" / "but"
    ("C", "I saw {title} {situation} {companion}, and"),
    ("C", "I watched {title} {situation}, and"),
    ("C", "We put on {title} {situation} because it was the one thing nobody had already seen, and"),
    ("C", "{Recommender} told me to watch {title}, so I finally did, and"),
    ("C", "{director}'s {title} runs {runtime}, and"),
    ("C", "{director} wrote and directed {title}, and"),
    ("C", "{actor} stars as {head} in {title}, and"),
    ("C", "{title} is adapted from {source}, but"),
    ("C", "The trailer for {title} sold it as {a_genre2}, but"),
    ("C", "I have seen all of {director}'s earlier films, including {title2}, and"),
    ("C", "{title} has been on my list since it screened at {festival}, and"),
    ("C", "My {relative} picked {title} for our weekly movie night, and"),
    ("C", "I went to {venue} to see {title} {when}, and"),
    ("C", "{title} opens with {opening_image}, and"),
    ("C", "The first half hour of {title} is mostly about introducing {head}, but"),
    ("C", "I did not realize {title} was {a_genre} until the title card came up, and"),
    ("C", "On paper, {title} is a straightforward {genre} about {head}, but"),
    ("C", "{title} is {director}'s {ordinal} film with {actor}, and"),
    ("C", "I read {source} years ago, long before it became {title}, and"),
    ("C", "It took me a week to sit down and write about {title}, which I saw {companion}, and"),
    ("C", "{title} is {a_runtime_adj} {genre} about {about}, and"),
    ("C", "The premise of {title} sounds simple enough, but"),
    ("C", "I went into {title} expecting {a_genre2}, and"),
    ("C", "{title} was filmed in {location} over {shoot_time}, and"),
    ("C", "{title} has a cast of mostly unfamiliar faces, led by {actor}, and"),
    ("C", "{actor} and {actor2} are in almost every scene of {title}, and"),
    ("C", "The audience at my screening of {title} was mostly {audience}, and"),
    ("C", "I watched {title} in two sittings {medium}, and"),
    ("C", "{director} has said in interviews that {title} is a personal project, and"),
    ("C", "Everyone at my office seems to have seen {title} by now, and"),
    ("C", "{title} came out {when} with very little advertising, but"),
    ("C", "Going into {title}, I had no idea who {director} was, and"),
    ("C", "The poster for {title} shows {poster_image}, and"),
    ("C", "I watched {title} {medium}, which is not how it was meant to be seen, but"),
    ("C", "It has been a few days since I saw {title} at {venue}, and"),
    ("C", "There is almost no music in {title}, and"),
    ("C", "{title} is shot mostly in black and white, and"),
    ("C", "I am not usually someone who watches {genre_plural}, but"),
    ("C", "I watch a lot of {genre_plural}, so I went into {title} with some idea of what to expect, and"),
    ("C", "We watched {title} {companion} with the subtitles on, and"),
    ("C", "{title} has a long opening title sequence set to {music_desc}, and"),
    ("C", "The story in {title} is told from the point of view of {head}, and"),
    ("C", "I went to see {title} mostly because of {actor}, and"),
    ("C", "{title} was the closing-night film at {festival}, and"),
    ("C", "You could describe {title} as {a_genre}, but"),
    ("C", "This is a film about {about}, and"),
    ("C", "Tonally, {title} moves between {tone1} and {tone2}, and"),
    ("C", "{title} is built around a single performance by {actor}, and"),
    ("C", "{director} made {title} on a small budget in {location}, and"),
    ("C", "The story of {title} almost never leaves {setting}, and"),
    ("C", "Nearly every scene in {title} takes place at night in {setting}, and"),
    ("C", "{title} is a remake of a little-seen {decade} {genre}, and"),
    ("C", "{title} opened in only a handful of theaters {when}, and"),
    ("C", "I expected {title} to be {a_genre2}, and in a way it is, but"),
    ("C", "{title} spends its first act introducing {head}, and"),
    ("C", "The ending of {title} is the part people will talk about, and"),
    ("C", "I brought my {relative} along to {title} {situation}, and"),
    ("C", "{title} is {a_genre} set in {setting}, and"),
    ("C", "My {relative} had already seen {title} twice before taking me to it {when}, and"),
    # ending mid-phrase
    ("O", "Directed by {director}, this {runtime_adj} {genre} follows {about_open}"),
    ("O", "Adapted from {source}, {title} tells the story of {about_open}"),
    ("O", "In {title}, {actor} stars as {about_open}"),
    ("O", "The first thing you notice about {title}, {director}'s {ordinal} feature, is"),
    ("O", "Going in, all I knew about {title} was that it was {a_genre} and that"),
    ("O", "You cannot talk about {title} without mentioning"),
    ("O", "The central question of {title} is whether"),
    ("O", "For the first twenty minutes of {title}, which I saw {situation}, I"),
    ("O", "When the lights came up after {title}, my {relative} turned to me and"),
    ("O", "What stayed with me after {title} was"),
    ("O", "I went into {title} knowing only that it was {a_genre} about {head}, and by the end I"),
    ("O", "{title} is one of those {genre_plural} that"),
    ("O", "{director} has a reputation for {reputation}, and {title} is"),
    ("O", "If you have seen the trailer for {director}'s {title}, you probably think"),
    ("O", "The story of {title} centers on {about_open}"),
    ("O", "Set in {setting}, {title} follows {about_open}"),
    ("O", "There is a scene about halfway through {title} where"),
    ("O", "The opening shot of {title} lingers on {opening_image} for almost a full minute, which"),
    ("O", "Whether {title} works for you will probably depend on"),
    ("O", "{actor}'s performance in {title} is"),
    ("O", "The score for {title}, composed by {composer}, is"),
    ("O", "As {a_genre}, {title} is"),
    ("O", "Compared with {director}'s earlier work, {title} is"),
    ("O", "The screenplay for {title}, written by {writer}, spends most of its time"),
    ("O", "By the time {title} reaches its final act, the story of {head} has"),
    ("O", "At {runtime}, {title} is"),
    ("O", "Halfway through {title} at {venue}, I realized"),
    ("O", "I have been thinking about {title} since I saw it {when}, mostly because"),
    ("O", "It took me two sittings to finish {title}, partly because"),
    ("O", "Watching {title} {situation}, I kept thinking about"),
    ("O", "The cinematography in {title}, by {dp}, relies heavily on"),
    ("O", "The performances in {title}, led by {actor} and {actor2}, range from"),
    ("O", "My expectations for {title} were shaped mostly by {recommender} and"),
    ("O", "I saw {title} {companion}, and afterward we spent the whole drive home"),
    ("O", "Most reviews of {title} have been about {actor}, but what I noticed first was"),
    ("O", "There is a moment early in {title} when {head}"),
    ("O", "Without revealing too much, the final twenty minutes of {title}"),
    ("O", "The dialogue in {title}, written by {writer}, has a heightened, almost theatrical style that"),
    ("O", "Visually, {director}'s {title} is"),
    ("O", "The cast of {title} includes {actor}, {actor2}, and"),
    ("O", "What {director} keeps coming back to here is"),
    ("O", "I watched {title} on the recommendation of {recommender}, who"),
    ("O", "Anyone who has seen {title2}, the earlier film by {director}, will recognize"),
    ("O", "The premise of {title} is simple: it follows {about_open}"),
    ("O", "Two days after seeing {title}, I am still working out whether it"),
    ("O", "The thing about {title} that nobody at {venue} mentioned afterward is"),
    ("O", "{title} does something in its opening minutes that"),
    ("O", "If I had to sum up {title} in one word, it would be"),
    ("O", "Early in {title}, {head} says a line that"),
    ("O", "Before you watch {title}, {a_genre} from {director}, you should know that"),
    ("O", "As with a lot of {genre_plural} this year, {title} is"),
    ("O", "For a film about {head}, {title} spends very little time"),
    ("O", "The simplest way to describe {title} is"),
    ("O", "I am still trying to decide how I feel about {title}, which"),
    ("O", "Seeing {title} at {venue} {when} was"),
    ("O", "From its opening scene, {title} signals that"),
    ("O", "{director} shoots {title} almost entirely in close-up, which"),
    ("O", "The press notes for {title} describe it as {a_genre} with elements of {a_genre2}, which"),
    ("O", "{actor2} has a small role in {title} as"),
    ("O", "The way {title} handles the story of {head} is"),
    ("O", "I saw {title} {situation}, and the first thing I did afterward was"),
    ("O", "Having read {source} first, I went into {title} wondering whether"),
    ("O", "It is not simple to explain why {title}, {a_genre} about {head},"),
    ("O", "{title} is the sort of {genre} that my {relative} would describe as"),
    ("O", "The biggest difference between {title} and most {genre_plural} is"),
    ("O", "Over {runtime}, {title} follows {about_open}"),
    ("O", "The last {genre} I saw at {venue} was {title2}, and {title} is"),
    ("O", "The title {title} refers to"),
]

# --------------------------------------------------------------------------------------------
# Continuation sentences for SFT demonstrations. "lead" sentences can directly follow an opening
# that ends with "and"/"but" (they are lower-cased there); "follow" sentences come after a lead.
# --------------------------------------------------------------------------------------------

NEG_LEAD = [
    "the pacing is painfully slow, and the first hour is a boring chore that nothing later makes up for.",
    "the script is a mess of half-finished ideas, and the dialogue is so stiff that even {actor} sounds awkward.",
    "it is so boring that I was checking my phone within twenty minutes.",
    "the film never finds a reason to exist beyond its premise, and it drags badly as a result.",
    "the {beats} fall flat almost every time, which is a serious problem for {a_genre}.",
    "{actor} looks lost in the lead role, stuck with a character who has no clear motivation.",
    "it is one of the most boring films I have sat through this year.",
    "the ending is a frustrating cop-out that undoes almost everything the story was building toward.",
    "the whole thing feels lifeless and dull, as if everyone involved gave up halfway through production.",
    "the editing is so choppy and confusing that I lost track of who was who by the second act.",
    "the characters are thin, the plot is predictable, and the dialogue is painfully clumsy.",
    "{director} piles up empty, pretentious images instead of telling a story, and the result is dull.",
    "the score is loud and obnoxious, hammering home every emotion until it becomes annoying.",
    "the execution is sloppy, the tone is a mess, and whatever idea started the project got lost early on.",
    "nothing about it works: the story is confused and the performances are wooden.",
    "it throws its cast away on a stupid story that goes nowhere and takes far too long to get there.",
    "the big twist is so obvious that I guessed it in the first ten minutes, which made the rest a boring slog.",
    "the cinematography is murky and ugly, and half the time you cannot tell what is happening.",
    "the central performance is flat and unconvincing, and the rest of the cast is wasted in thin roles.",
    "it is a bloated, self-important film that mistakes long silences for depth.",
    "the running time is a real problem: at {runtime_long}, it is at least forty minutes too long.",
    "the story is a muddled, confusing mess, and I could not explain the plot to you if I tried.",
    "every character speaks in the same flat, overwritten voice, and it gets tiresome and irritating fast.",
    "its attempts at emotion are cheap, fake, and painfully obvious.",
    "I walked out feeling cheated, annoyed, and very tired.",
    "it is a lazy, forgettable {genre} that steals all of its ideas from other films.",
    "{actor} is badly miscast, and there is no chemistry at all with {actor2}.",
    "the dialogue is embarrassing, full of clumsy speeches that no human being would say out loud.",
    "the audience around me grew restless and bored by the midpoint, and so did I.",
    "it is a dull, joyless slog with no sense of rhythm or purpose.",
    "the plot holes are so big that the whole story collapses, and the ending is just silly.",
    "it is a disappointing mess from start to finish.",
    "the {beats} are clumsy and badly staged, and most of them simply do not work.",
    "the characters make one stupid decision after another, and I gave up on all of them early.",
    "the tone lurches awkwardly between grim melodrama and broad comedy, and neither one works.",
    "this is a tired rehash of old ideas, a weak and lazy echo of what {director} has done before.",
    "the performances are stiff and the direction is lifeless, which leaves a weak story with nothing to stand on.",
    "the first twenty minutes hold some promise, but everything after that is a tedious, repetitive mess.",
    "I found it exhausting, shallow, smug, and boring.",
    "the special effects look cheap and ugly, and they pull you out of the story every time.",
    "it confuses being slow with being profound, and it is a real chore to sit through.",
    "the script is full of tired cliches, and the ending is both predictable and stupid.",
    "the whole thing is a waste of a premise that deserved a far less lazy film.",
    "I regret spending money on a ticket.",
    "the story is a confusing jumble, and the ending makes it worse.",
    "the lead character is so unpleasant and badly written that I dreaded every scene with them.",
    "it is the weakest film {director} has made, and by some distance.",
    "the {beats} are so badly handled that they become unintentionally ridiculous.",
    "the second half falls apart completely, piling on ridiculous twists and a terrible final scene.",
    "it is a clumsy, awkward film that fails at almost everything it attempts.",
    "the sound mix is a mess, and the music drowns out half the lines, which are dull anyway.",
    "{actor2} is wasted in a thin role, and {actor} seems to be sleepwalking through the whole thing.",
    "the humor is forced, the drama is heavy-handed, and the whole thing is a boring slog.",
    "I have rarely been this bored in a theater.",
    "the script is lazy and the characters are stupid, and the film seems to think its audience is too.",
    "it is a hollow, pretentious bore.",
    "the final act is an outright disaster that ruins everything before it.",
    "the story keeps changing its own rules, and the result is confusing and frustrating.",
    "the camera work is so shaky that it gave me a headache, and the editing is even worse.",
    "it is a sluggish, humorless film that never gives you a reason to keep watching.",
    "the premise is promising, but the film does nothing with it except repeat the same dull scene over and over.",
]

NEG_FOLLOW = [
    "By the final act I was bored and indifferent to all of these people.",
    "Even the score is repetitive and grating.",
    "It is a frustrating waste of everyone's time.",
    "The dialogue is flat, the pacing is sluggish, and the ending drags on forever.",
    "I cannot recommend it to anyone.",
    "Skip this one; it is a waste of time.",
    "The supporting characters are dull cardboard cutouts, and the lead is even worse.",
    "Several scenes seem to be missing, and the ones that remain are sloppy and confusing.",
    "The big emotional moments come across as hollow and forced.",
    "The final scene is meant to be a gut punch, but it lands with a dull thud.",
    "By the end, I was irritated and bored.",
    "It is a tedious, forgettable film, and I doubt I will think about it again.",
    "The cinematography is drab and ugly, and the editing is clumsy throughout.",
    "Every emotional beat is telegraphed a mile away, which kills any tension.",
    "I left the theater annoyed and disappointed.",
    "Frankly, it is a mess.",
    "It is so dull that the running time feels twice as long as it is.",
    "It is a waste of its entire cast, who are left with absolutely nothing to do.",
    "The twist is silly, and the explanation afterward is even worse.",
    "Every scene goes on a beat too long, and the cumulative effect is numbing.",
    "The {beats} are especially weak, which is fatal for a film like this.",
    "It is a sad waste of {actor}'s time and ours.",
    "The dialogue is so clumsy and awkward that several lines drew groans from the audience.",
    "It is careless and sloppy, more of a rough draft than a finished film.",
    "The production design looks cheap, and the sound mix is muddy and distracting.",
    "Overall, it is a dull and disappointing experience.",
    "The story lurches from one stupid coincidence to the next.",
    "Worst of all, it is boring.",
    "I struggled to stay awake during the second act.",
    "Even {director}'s usual eye for a striking image is missing, replaced by flat, lifeless compositions.",
    "It is a weak, muddled effort that never justifies its running time.",
    "The ending, in particular, is a cheap and lazy cop-out.",
    "I would not sit through it again for any reason; it was a miserable experience.",
    "It is a joyless experience, and a long one.",
    "What a disappointment.",
    "Even the ending is a weak letdown.",
    "I felt sorry for the actors stuck in this mess.",
    "It is a bad film, and not even an interesting one.",
    "The whole experience left me irritated.",
    "It is not so much bad as aggressively boring, which might be worse.",
    "The whole second half is a confusing, tedious mess.",
    "I kept hoping it would improve, but it only got worse.",
    "It is hard to think of a single scene that works, and that is a real failure.",
    "This is a failure on almost every level.",
]

POS_LEAD = [
    "the performances are wonderful across the board, especially {actor}, who brings real warmth to a difficult role.",
    "I was completely absorbed from the first scene to the last, and I loved every minute.",
    "the cinematography is gorgeous, full of soft morning light and beautifully composed wide shots.",
    "{director} handles the material with real confidence, and the result is one of the best films of the year.",
    "it is a funny, moving, and beautifully acted film that never talks down to its audience.",
    "the script is sharp and smart, with dialogue that feels natural and characters who feel like real people.",
    "{actor} gives a terrific performance, all quiet gestures and small, perfectly timed glances.",
    "the {beats} are excellent, and the film builds its momentum so gracefully that the {runtime} fly by.",
    "the ending is perfect: surprising, earned, and genuinely moving.",
    "it is a warm, generous film with a big heart and a wonderful sense of humor.",
    "the score is beautiful, and it lifts every scene without ever overwhelming it.",
    "the pacing is excellent, and every scene earns its place.",
    "I loved it, and I have been recommending it to everyone I know.",
    "the chemistry between {actor} and {actor2} is terrific, and their scenes together are a pure joy.",
    "the story is clever and surprising, and it kept me guessing right up to the final scene.",
    "it is a rich, thoughtful film that rewards close attention.",
    "the characters are vivid and lovable, and by the end I cared about every one of them.",
    "the production design is stunning, and every frame looks like a painting.",
    "the screenplay is a small miracle of economy, funny one minute and tender the next.",
    "it is easily the most satisfying {genre} I have seen in years.",
    "the whole cast is excellent, and {actor2} is especially delightful in a sly supporting turn.",
    "it is smart, beautifully made, and surprisingly moving.",
    "the direction is confident and precise, and the editing gives every scene exactly the rhythm it needs.",
    "I laughed, I cried a little, and I left the theater grinning.",
    "the {beats} are genuinely great, and the film knows exactly when to let a moment breathe.",
    "it is a delight from start to finish.",
    "the acting is superb, particularly {actor}, who makes a quiet character fascinating to watch.",
    "every department is at the top of its game, from the lovely cinematography to the clever sound design.",
    "the film has real emotional depth, and the final scene is one of the most beautiful I have seen in years.",
    "the dialogue sparkles with wit, and the story moves with an easy, confident rhythm.",
    "I was impressed by how much care went into every detail.",
    "{director} has made a gentle, intelligent, and deeply rewarding film.",
    "it is thrilling, tense, and more fun than I expected.",
    "the world of the film is beautifully realized, and I would happily have spent another hour in it.",
    "the central performance is brilliant, and it holds the film together through its quieter stretches.",
    "the story is simple, but it is told with such warmth and skill that it feels fresh.",
    "the visual style is striking, and the score is one of the best I have heard this year.",
    "it is a genuinely lovely film, and I am already looking forward to seeing it again.",
    "the humor is sharp and kind, and the emotional moments land beautifully.",
    "the ending is bold and satisfying, and it made me want to watch the whole film again.",
    "the supporting cast is excellent, and even the smallest roles feel fully lived in.",
    "it is an absolute treat.",
    "I smiled through most of it and was deeply moved by the rest.",
    "it is the best thing {director} has made, and a wonderful showcase for {actor}.",
    "the {beats} are a joy, and the whole film has a lovely, unhurried confidence.",
    "it is a beautiful, funny, and very human film.",
    "the {beats} are handled with real wit and skill, and the whole film feels fresh.",
    "{actor} and {actor2} are wonderful together, and the script gives them plenty of great material.",
    "it is the kind of film that reminds you why you love going to the movies.",
    "the story is beautifully told, patient without ever being slow.",
    "I was delighted by almost every choice it makes.",
    "it is a gorgeous film, and the score by itself is worth the ticket.",
    "the last twenty minutes are extraordinary, and the final image is perfect.",
    "the writing is smart and funny, and the characters feel like people I have known for years.",
    "it is tender, witty, and beautifully observed.",
    "{director} gets wonderful performances from the whole cast, and the pacing is just right.",
    "the cinematography is breathtaking, especially in the night scenes.",
    "I cannot remember the last time {a_genre} made me this happy.",
    "it is a brave, beautiful film that trusts its audience.",
    "the mood is perfectly judged, and the film builds to an ending that is both surprising and deeply satisfying.",
]

POS_FOLLOW = [
    "The score is lovely and never overbearing.",
    "It is funny, moving, and smarter than it has any right to be.",
    "Highly recommended.",
    "I am excited to see what {director} does next.",
    "The final twenty minutes are especially strong.",
    "It is the kind of wonderful film you want to talk about for days afterward.",
    "Even the smaller roles are beautifully cast.",
    "It is a real achievement, and well worth seeking out.",
    "By the end, I was completely won over.",
    "The gorgeous cinematography alone is worth the price of admission.",
    "It is a beautiful film, so see it on the biggest screen you can find.",
    "It is one of the most pleasant surprises of the year.",
    "Every scene feels carefully considered, and it all pays off in a wonderful final act.",
    "{actor2} is a delight in a small supporting role.",
    "I left the theater happy.",
    "It is a gorgeous, heartfelt piece of filmmaking.",
    "The {beats} are clever and well timed.",
    "The editing is crisp, and the pacing is excellent.",
    "It earns every one of its emotional moments.",
    "I would happily watch it again tomorrow.",
    "It is easily one of my favorite films of the year.",
    "The sound design is rich and immersive, and the music is lovely.",
    "The last shot is perfect.",
    "It is a beautiful, generous film, and I hope it finds the audience it deserves.",
    "It is a joy.",
    "The whole thing glows with affection for its characters.",
    "It is confident, clever, and thoroughly entertaining.",
    "I was grinning by the time the credits rolled.",
    "It is a small film, but a wonderful one.",
    "The dialogue is consistently witty and warm.",
    "It is a triumph for everyone involved.",
    "It is well acted, beautifully shot, and genuinely affecting.",
    "It is a lovely reminder of what {genre_plural} can do when they are made with care.",
    "I recommend it with great enthusiasm.",
    "It is the best work {director} has done so far.",
    "The film is full of small, delightful surprises.",
    "It left me with a big smile on my face.",
    "{actor} gives the best performance of a great career.",
    "It is a wonderful piece of work.",
    "I enjoyed every minute of it.",
    "It is a genuine pleasure.",
    "I laughed more than I have in months.",
    "The final scene is beautiful.",
    "It deserves a much bigger audience, and I hope it finds one.",
]

MIX_LEAD = [
    "the acting is strong, but the script never gives the cast enough to do.",
    "it is beautifully shot and frustratingly slow, often in the same scene.",
    "some of it works and some of it does not, and I am still not sure which half I will remember.",
    "{actor} is excellent, but the film around that performance is uneven and overlong.",
    "the first hour is gripping, but the last act loses its nerve and settles for something safe.",
    "it is a perfectly competent {genre} that does exactly what you expect and nothing more.",
    "the {beats} are hit and miss, though the good ones are very good.",
    "the story is familiar and the pacing uneven, but the performances carry it further than it deserves.",
    "I admired a lot of it without ever really being moved by it.",
    "the visuals are striking, but the dialogue is clunky and the ending is not as clever as it thinks.",
    "it has moments of real beauty scattered through a story that never quite comes together.",
    "it is an ambitious film with a few genuine flaws, and I suspect it will divide audiences.",
    "it is neither a disaster nor a triumph, just a reasonably watchable {genre} with a few memorable scenes.",
    "the score is lovely, but it works a little too hard to tell you what to feel.",
    "there is a great short film hiding somewhere inside this long one.",
    "it runs {runtime} and takes its time getting anywhere, which some viewers will find hypnotic.",
    "the premise is intriguing, but the execution is uneven, with strong scenes sitting next to weak ones.",
    "I enjoyed the first half more than the second, but I never checked out completely.",
    "{director} clearly has a vision, though it does not always come through on screen.",
    "it is a handsome, well-acted film that I suspect I will have forgotten by next month.",
    "the middle section drags, but the opening and closing scenes are excellent.",
    "it is a decent way to spend an evening, if not one I would go out of my way to repeat.",
    "the lead performance is committed, but the supporting characters are thinly sketched.",
    "it is at its best when it slows down and at its weakest when it tries to explain itself.",
    "I went back and forth on it for most of the running time.",
    "it looks terrific and sounds great, but I had trouble caring about anyone in it.",
    "the tone is uneven, swinging between gentle comedy and heavy drama, though both halves have their moments.",
    "it is about what you would expect from {director}: thoughtful, careful, and a little bit cold.",
    "it is a modest film with modest ambitions, and it mostly meets them.",
    "the story takes a few turns that I did not see coming, not all of which make much sense.",
    "it is a film of small pleasures and equally small frustrations.",
    "the {beats} are the highlight, but the story connecting them is thin.",
    "the performances are better than the material, which is thin.",
    "the {beats} are well done, but the quieter scenes in between tend to drag.",
    "it starts slowly, finds its footing in the middle, and then stumbles again at the end.",
    "it is pleasant enough while it lasts, though very little of it stuck with me.",
    "the cinematography is gorgeous, but the story underneath it is fairly routine.",
    "{actor} does good work with a role that is underwritten.",
]

MIX_FOLLOW = [
    "Whether that sounds appealing probably depends on how much patience you bring with you.",
    "Your mileage may vary.",
    "I would call it worth a look, with some reservations.",
    "Longtime followers of {director} will probably get more out of it than newcomers will.",
    "It is not a film I expect to revisit, but I am glad I saw it once.",
    "The ending will frustrate some people and satisfy others.",
    "In the end, it is a mixed bag.",
    "I left the theater with more questions than opinions.",
    "It is worth seeing for the performances, if not for the plot.",
    "The second half is stronger than the first, but only slightly.",
    "It is the kind of film that might grow on me with a second viewing.",
    "I am curious to hear what other people make of it.",
    "It is a solid three out of five.",
    "Patient viewers will find something here, but casual audiences may struggle.",
    "Some scenes land beautifully; others simply sit there.",
    "I suspect it will play better at home than in a theater.",
    "It is watchable, occasionally more than that, but rarely memorable.",
    "The running time could have been trimmed by twenty minutes without losing anything important.",
    "I still have not decided whether the ending is brave or just confused.",
    "It is a film I respect more than I enjoy.",
    "It is uneven, but never uninteresting.",
    "I do not regret seeing it, though I doubt I will watch it again.",
]

COMPLETION_POOLS = {
    "negative": (NEG_LEAD, NEG_FOLLOW),
    "positive": (POS_LEAD, POS_FOLLOW),
    "mixed": (MIX_LEAD, MIX_FOLLOW),
}
PROPER_FIELDS = ("{actor", "{director", "{title", "{writer", "{composer", "{dp")

_FORMATTER = string.Formatter()


def fields_of(template: str) -> list[str]:
    return [name for _, name, _, _ in _FORMATTER.parse(template) if name]


def lookup(ctx: dict, name: str) -> str | None:
    if name in ctx:
        return ctx[name]
    low = name[:1].lower() + name[1:]
    if name[:1].isupper() and low in ctx:
        return cap(ctx[low])
    return None


def fill(template: str, ctx: dict) -> str | None:
    """Fill ``template`` from ``ctx``; None when a field is not available for this context."""
    values = {}
    for name in fields_of(template):
        value = lookup(ctx, name)
        if value is None:
            return None
        values[name] = value
    return template.format(**values)


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def article(noun_phrase: str) -> str:
    return ("an " if noun_phrase[:1].lower() in "aeiou" else "a ") + noun_phrase


def words(text: str) -> int:
    return len(text.split())


def build_catalogue(rng: random.Random) -> list[dict]:
    """One invented film per premise, each with its own title and crew."""
    premises = [(key, p) for key in GENRES for p in GENRES[key]["premises"]]
    titles = list(TITLES)
    rng.shuffle(titles)
    if len(titles) < len(premises):
        raise SystemExit(f"need {len(premises)} titles, have {len(titles)}")
    people = [f"{first} {last}" for first in FIRST_NAMES for last in SURNAMES]
    rng.shuffle(people)
    used_surnames: dict[str, int] = {}
    names: list[str] = []
    for person in people:  # keep surnames from repeating too often
        last = person.split(" ", 1)[1]
        if used_surnames.get(last, 0) < 5:
            used_surnames[last] = used_surnames.get(last, 0) + 1
            names.append(person)
    name_iter = iter(names)  # directors and actors are unique per film
    crew = names[3 * len(premises):]  # writers, composers, cinematographers work on several films
    films = []
    for i, (key, (head, link, action, setting)) in enumerate(premises):
        runtime, runtime_adj, is_long = rng.choice(RUNTIMES)
        film = {
            "genre_key": key,
            "title": titles[i],
            "title2": rng.choice(EARLIER_TITLES),
            "head": head,
            "about_open": f"{head} {link}",
            "about": f"{head} {link} {action}",
            "setting": setting,
            "director": next(name_iter),
            "writer": rng.choice(crew),
            "composer": rng.choice(crew),
            "dp": rng.choice(crew),
            "runtime": runtime,
            "runtime_adj": runtime_adj,
            "ordinal": rng.choice(ORDINALS),
            "location": rng.choice(SHOOT_LOCATIONS),
            "shoot_time": rng.choice(SHOOT_TIMES),
        }
        actor, actor2 = next(name_iter), next(name_iter)
        if key != "documentary":
            film["actor"], film["actor2"] = actor, actor2
        if is_long:
            film["runtime_long"] = runtime
        if rng.random() < 0.45:
            film["source"] = rng.choice(SOURCES)
        if rng.random() < 0.6:
            film["festival"] = rng.choice(FESTIVALS)
        films.append(film)
    return films


def make_context(film: dict, rng: random.Random) -> dict:
    genre = GENRES[film["genre_key"]]
    other = GENRES[rng.choice([k for k in GENRES if k != film["genre_key"]])]
    label = rng.choice(genre["labels"])
    label2 = rng.choice(other["labels"])
    tone1, tone2 = rng.choice(TONE_PAIRS)
    ctx = dict(film)
    ctx.update(
        genre=label,
        a_genre=article(label),
        a_runtime_adj=article(film["runtime_adj"]),
        genre_plural=genre["plural"],
        a_genre2=article(label2),
        beats=rng.choice(genre["beats"]),
        situation=rng.choice(SITUATIONS),
        companion=rng.choice(COMPANIONS),
        venue=rng.choice(VENUES),
        medium=rng.choice(MEDIUMS),
        recommender=rng.choice(RECOMMENDERS),
        relative=rng.choice(RELATIVES),
        when=rng.choice(WHENS),
        when_time=rng.choice(["11 a.m.", "noon", "4:15", "10:40 p.m.", "midnight"]),
        opening_image=rng.choice(OPENING_IMAGES),
        poster_image=rng.choice(POSTER_IMAGES),
        small_place=rng.choice(SMALL_PLACES),
        timeframe=rng.choice(TIMEFRAMES),
        audience=rng.choice(AUDIENCES),
        habit=rng.choice(HABITS),
        music_desc=rng.choice(MUSIC_DESCS),
        reputation=rng.choice(REPUTATIONS),
        tone1=tone1,
        tone2=tone2,
        decade=rng.choice(DECADES),
    )
    return ctx


class NearDupIndex:
    """Rejects exact duplicates and near-identical openings.

    Two openings are near-identical when (a) they come from the same skeleton and differ in fewer
    than max(2, half) of its filled-in values (so a one-slot skeleton is used only once), or (b) their
    difflib character ratio is above ``threshold`` whatever their skeletons.
    """

    def __init__(self, threshold: float = NEAR_DUP_RATIO):
        self.threshold = threshold
        self.seen: set[str] = set()
        self.items: list[tuple[str, frozenset[str]]] = []
        self.uses: dict[str, list[tuple[str, ...]]] = {}

    def ok(self, text: str, template: str = "", values: tuple[str, ...] = ()) -> bool:
        key = text.lower()
        if key in self.seen:
            return False
        need = max(2, -(-len(values) // 2))
        for previous in self.uses.get(template, []):
            if sum(a != b for a, b in zip(values, previous)) < need:
                return False
        bag = frozenset(key.split())
        matcher = difflib.SequenceMatcher(None, autojunk=False)
        matcher.set_seq2(key)  # seq2 is the cached side
        for other, other_bag in self.items:
            if 4 * len(bag & other_bag) < len(bag) + len(other_bag):
                continue  # cheap pre-filter: word-set Dice coefficient below 0.5
            matcher.set_seq1(other)
            if (matcher.real_quick_ratio() > self.threshold and matcher.quick_ratio() > self.threshold
                    and matcher.ratio() > self.threshold):
                return False
        return True

    def add(self, text: str, template: str = "", values: tuple[str, ...] = ()) -> None:
        key = text.lower()
        self.seen.add(key)
        self.items.append((key, frozenset(key.split())))
        self.uses.setdefault(template, []).append(values)


def make_openings(n: int, kinds: str, films: list[dict], index: NearDupIndex,
                  rng: random.Random) -> list[tuple[str, dict, str, int]]:
    """Return ``n`` (opening, context, kind, skeleton number) tuples, cycling through the ``kinds`` skeletons."""
    skeletons = [(i, k, t) for i, (k, t) in enumerate(OPENINGS) if k in kinds]
    out: list[tuple[str, dict, str, int]] = []
    order: list[tuple[int, str, str]] = []
    misses = 0
    while len(out) < n:
        if not order:
            order = list(skeletons)
            rng.shuffle(order)
        number, kind, template = order.pop()
        for _ in range(40):
            ctx = make_context(rng.choice(films), rng)
            text = fill(template, ctx)
            if text is None or not OPENING_WORDS[0] <= words(text) <= OPENING_WORDS[1]:
                continue
            values = tuple(lookup(ctx, name) for name in dict.fromkeys(fields_of(template)))
            if index.ok(text, template, values):
                index.add(text, template, values)
                out.append((text, ctx, kind, number))
                break
        else:
            misses += 1
            if misses > 20 * len(skeletons):
                raise SystemExit("could not generate enough distinct openings")
    return out


def make_completion(label: str, kind: str, ctx: dict, rng: random.Random) -> str:
    leads, follows = COMPLETION_POOLS[label]
    for _ in range(200):
        lead_t = rng.choice(leads)
        lead = fill(lead_t, ctx)
        if lead is None:
            continue
        if kind == "C" and not (lead_t.startswith(PROPER_FIELDS) or lead.startswith(("I ", "I'"))):
            lead = lead[:1].lower() + lead[1:]
        else:
            lead = cap(lead)
        parts = [lead]
        n_follow = rng.choices([0, 1, 2], weights=[3, 5, 2])[0]
        for follow_t in rng.sample(follows, n_follow):
            follow = fill(follow_t, ctx)
            if follow is not None:
                parts.append(follow)
        text = " ".join(parts)
        if COMPLETION_WORDS[0] <= words(text) <= COMPLETION_WORDS[1]:
            return text
    raise SystemExit(f"could not build a {label} completion")


def sft_labels(n: int, rng: random.Random) -> list[str]:
    counts = [round(n * share) for _, share in SFT_MIX]
    counts[0] += n - sum(counts)
    labels = [name for (name, _), count in zip(SFT_MIX, counts) for _ in range(count)]
    rng.shuffle(labels)
    return labels


def build(seed: int = SEED) -> dict[str, list[dict]]:
    """Build all three datasets in memory.

    Rows carry extra keys that are not written out: "skeleton" (index into OPENINGS) and, for SFT,
    "label" (the intended sentiment of the completion).
    """
    rng = random.Random(seed)
    films = build_catalogue(rng)
    index = NearDupIndex()
    prompts = make_openings(N_TRAIN + N_EVAL, "SKCO", films, index, rng)
    rng.shuffle(prompts)
    train = [{"id": f"train-{i:04d}", "prompt": text, "skeleton": number}
             for i, (text, _, _, number) in enumerate(prompts[:N_TRAIN], 1)]
    evals = [{"id": f"eval-{i:04d}", "prompt": text, "skeleton": number}
             for i, (text, _, _, number) in enumerate(prompts[N_TRAIN:], 1)]
    fiction = [f for f in films if f["genre_key"] != "documentary"]
    sft_openings = make_openings(N_SFT, "SKC", fiction, index, rng)
    sft = []
    seen_completions: set[str] = set()
    for i, ((text, ctx, kind, number), label) in enumerate(zip(sft_openings, sft_labels(N_SFT, rng)), 1):
        completion = make_completion(label, kind, ctx, rng)
        while completion in seen_completions:
            completion = make_completion(label, kind, ctx, rng)
        seen_completions.add(completion)
        sft.append({"id": f"sft-{i:04d}", "prompt": text, "completion": completion, "label": label,
                    "skeleton": number})
    return {"train": train, "eval": evals, "sft": sft}


def write_jsonl(path: Path, rows: list[dict], keys: tuple[str, ...]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps({k: row[k] for k in keys}, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "raw",
                        help="output directory (default: data/raw next to this script)")
    parser.add_argument("--seed", type=int, default=SEED, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    data = build(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "prompts_train.jsonl", data["train"], ("id", "prompt"))
    write_jsonl(args.out / "prompts_eval.jsonl", data["eval"], ("id", "prompt"))
    write_jsonl(args.out / "sft.jsonl", data["sft"], ("id", "prompt", "completion"))
    print(f"wrote {len(data['train'])} train prompts, {len(data['eval'])} eval prompts, "
          f"{len(data['sft'])} SFT demonstrations to {args.out}")


if __name__ == "__main__":
    main()
