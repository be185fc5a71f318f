"""The curated facts of the counterfactual-facts family, written for PHFE: ten relations of famous facts.

Each relation's answers are of one kind (cities, symbols, surnames...), so a counterfactual answer drawn
from the same relation is type-matched. Subjects whose relation has several true answers (Bolivia's
capitals, Canada's languages, the Pantheons of Rome and Paris) are left out, so that no other answer of the
relation is also true. Names are ASCII. Each relation also lists invented subjects, which no model can
have a prior about.
"""

from __future__ import annotations

from dataclasses import dataclass


def fill(template: str, subject: str, answer: str = "") -> str:
    """``template`` with ``{subject}``, ``{answer}`` and ``{a_answer}`` ("a"/"an" + answer) filled in, its
    first letter capitalized."""
    article = "an" if answer[:1].lower() in ("a", "e", "i", "o", "u") else "a"
    text = template.format(subject=subject, answer=answer, a_answer=f"{article} {answer}")
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Relation:
    """A relation: its (subject, answer) facts, how to ask and state them, and invented subjects.

    ``question`` is the closed-book prompt ("Q: ...?\\nA:", answers scored as " {answer}"); ``statement``
    states a fact in the question's own words; each of ``paraphrases`` states it without the question's
    wording (the copy control).
    """

    name: str
    question: str
    statement: str
    paraphrases: tuple[str, ...]
    facts: tuple[tuple[str, str], ...]
    invented: tuple[str, ...]

    @property
    def answers(self) -> tuple[str, ...]:
        """The distinct answers of the relation, sorted: the pool of type-matched alternatives."""
        return tuple(sorted({answer for _, answer in self.facts}))

    def ask(self, subject: str) -> str:
        return fill(self.question, subject)

    def state(self, subject: str, answer: str) -> str:
        return fill(self.statement, subject, answer)


def _lines(text: str) -> tuple[str, ...]:
    """The non-blank lines of ``text``, stripped."""
    return tuple(line.strip() for line in text.strip().splitlines())


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    """``subject | answer`` lines as pairs."""
    rows = [line.split("|") for line in _lines(text)]
    return tuple((subject.strip(), answer.strip()) for subject, answer in rows)


INVENTED_COUNTRIES = _lines("""
    Veltoria
    Drasmund
    Quorvania
    Brellmark
    Kalveth
    Zembria
    Morvessa
    Tarquenia
    Uldaria
    Sarnovia
    Yslandor
    Pellagoth
""")

CAPITAL = Relation(
    name="capital",
    question="Q: What is the capital of {subject}?\nA:",
    statement="The capital of {subject} is {answer}.",
    paraphrases=("{subject} is governed from {answer}.", "The government of {subject} sits in {answer}."),
    facts=_pairs("""
        France | Paris
        Germany | Berlin
        Italy | Rome
        Spain | Madrid
        Portugal | Lisbon
        the United Kingdom | London
        Ireland | Dublin
        the Netherlands | Amsterdam
        Belgium | Brussels
        Austria | Vienna
        Switzerland | Bern
        Poland | Warsaw
        the Czech Republic | Prague
        Hungary | Budapest
        Greece | Athens
        Sweden | Stockholm
        Norway | Oslo
        Denmark | Copenhagen
        Finland | Helsinki
        Iceland | Reykjavik
        Russia | Moscow
        Ukraine | Kyiv
        Romania | Bucharest
        Bulgaria | Sofia
        Serbia | Belgrade
        Croatia | Zagreb
        Estonia | Tallinn
        Latvia | Riga
        Lithuania | Vilnius
        Slovakia | Bratislava
        Albania | Tirana
        Armenia | Yerevan
        Turkey | Ankara
        Egypt | Cairo
        Kenya | Nairobi
        Nigeria | Abuja
        Ethiopia | Addis Ababa
        Morocco | Rabat
        Ghana | Accra
        Senegal | Dakar
        Algeria | Algiers
        Tunisia | Tunis
        Libya | Tripoli
        Sudan | Khartoum
        Uganda | Kampala
        Zimbabwe | Harare
        Japan | Tokyo
        China | Beijing
        South Korea | Seoul
        North Korea | Pyongyang
        India | New Delhi
        Pakistan | Islamabad
        Bangladesh | Dhaka
        Thailand | Bangkok
        Vietnam | Hanoi
        Cambodia | Phnom Penh
        the Philippines | Manila
        Malaysia | Kuala Lumpur
        Afghanistan | Kabul
        Iran | Tehran
        Iraq | Baghdad
        Saudi Arabia | Riyadh
        Syria | Damascus
        Lebanon | Beirut
        Jordan | Amman
        Qatar | Doha
        Nepal | Kathmandu
        Mongolia | Ulaanbaatar
        Kazakhstan | Astana
        the United States | Washington
        Canada | Ottawa
        Cuba | Havana
        Jamaica | Kingston
        Argentina | Buenos Aires
        Brazil | Brasilia
        Chile | Santiago
        Peru | Lima
        Colombia | Bogota
        Venezuela | Caracas
        Ecuador | Quito
        Uruguay | Montevideo
        Australia | Canberra
        New Zealand | Wellington
    """),
    invented=INVENTED_COUNTRIES,
)

ELEMENT_SYMBOL = Relation(
    name="element_symbol",
    question="Q: What is the chemical symbol for {subject}?\nA:",
    statement="The chemical symbol for {subject} is {answer}.",
    paraphrases=("Chemists abbreviate {subject} as {answer}.", "On the periodic table, {subject} is written {answer}."),
    facts=_pairs("""
        hydrogen | H
        helium | He
        lithium | Li
        beryllium | Be
        boron | B
        carbon | C
        nitrogen | N
        oxygen | O
        fluorine | F
        neon | Ne
        sodium | Na
        magnesium | Mg
        aluminium | Al
        silicon | Si
        phosphorus | P
        sulfur | S
        chlorine | Cl
        argon | Ar
        potassium | K
        calcium | Ca
        scandium | Sc
        titanium | Ti
        vanadium | V
        chromium | Cr
        manganese | Mn
        iron | Fe
        cobalt | Co
        nickel | Ni
        copper | Cu
        zinc | Zn
        gallium | Ga
        germanium | Ge
        arsenic | As
        selenium | Se
        bromine | Br
        krypton | Kr
        rubidium | Rb
        strontium | Sr
        zirconium | Zr
        molybdenum | Mo
        palladium | Pd
        silver | Ag
        cadmium | Cd
        tin | Sn
        antimony | Sb
        iodine | I
        xenon | Xe
        cesium | Cs
        barium | Ba
        tungsten | W
        platinum | Pt
        gold | Au
        mercury | Hg
        lead | Pb
        bismuth | Bi
        radon | Rn
        radium | Ra
        uranium | U
        plutonium | Pu
    """),
    invented=_lines("""
        zorvium
        quenthium
        brallium
        vexium
        taldrium
        orrenium
        scalvium
        dremium
        glintium
        farrosium
        nuvium
        kelbrium
    """),
)

BOOK_AUTHOR = Relation(
    name="book_author",
    question="Q: Who wrote {subject}?\nA:",
    statement="{subject} was written by {answer}.",
    paraphrases=("The author of {subject} is {answer}.", "{subject} came from the pen of {answer}."),
    facts=_pairs("""
        Hamlet | Shakespeare
        Macbeth | Shakespeare
        Romeo and Juliet | Shakespeare
        Pride and Prejudice | Austen
        Sense and Sensibility | Austen
        Nineteen Eighty-Four | Orwell
        Animal Farm | Orwell
        The Great Gatsby | Fitzgerald
        To Kill a Mockingbird | Lee
        Moby-Dick | Melville
        War and Peace | Tolstoy
        Anna Karenina | Tolstoy
        Crime and Punishment | Dostoevsky
        The Brothers Karamazov | Dostoevsky
        Don Quixote | Cervantes
        the Odyssey | Homer
        the Iliad | Homer
        the Divine Comedy | Dante
        Great Expectations | Dickens
        Oliver Twist | Dickens
        A Tale of Two Cities | Dickens
        David Copperfield | Dickens
        Frankenstein | Shelley
        Dracula | Stoker
        The Catcher in the Rye | Salinger
        Jane Eyre | Bronte
        Wuthering Heights | Bronte
        Les Miserables | Hugo
        The Hunchback of Notre-Dame | Hugo
        Ulysses | Joyce
        The Old Man and the Sea | Hemingway
        A Farewell to Arms | Hemingway
        Brave New World | Huxley
        The Hobbit | Tolkien
        The Lord of the Rings | Tolkien
        Adventures of Huckleberry Finn | Twain
        The Adventures of Tom Sawyer | Twain
        Lolita | Nabokov
        One Hundred Years of Solitude | Marquez
        The Metamorphosis | Kafka
        The Trial | Kafka
        Faust | Goethe
        Madame Bovary | Flaubert
        The Grapes of Wrath | Steinbeck
        Of Mice and Men | Steinbeck
        Fahrenheit 451 | Bradbury
        Lord of the Flies | Golding
        Gulliver's Travels | Swift
        Robinson Crusoe | Defoe
        Treasure Island | Stevenson
        The Picture of Dorian Gray | Wilde
        The Time Machine | Wells
        The War of the Worlds | Wells
        Alice's Adventures in Wonderland | Carroll
        The Canterbury Tales | Chaucer
        Paradise Lost | Milton
        Things Fall Apart | Achebe
        Gone with the Wind | Mitchell
        Little Women | Alcott
        The Count of Monte Cristo | Dumas
        The Three Musketeers | Dumas
        Slaughterhouse-Five | Vonnegut
        Catch-22 | Heller
        On the Origin of Species | Darwin
        A Brief History of Time | Hawking
        Das Kapital | Marx
        The Prince | Machiavelli
        Twenty Thousand Leagues Under the Seas | Verne
        Around the World in Eighty Days | Verne
    """),
    invented=_lines("""
        The Tides of Quellmarsh
        Ashes over Vandrel
        The Lanterns of Orvik
        Brommel's Winter
        A Song for Tessaly
        The Salt Keepers of Durnhelm
        Night Falls on Carrowick
        The Ninth Orbrand
        Letters from Velmoor
        The House on Skarn Hill
        Madame Ostrevin
        The Clockmaker of Ylse
    """),
)

LANDMARK_CITY = Relation(
    name="landmark_city",
    question="Q: In which city is {subject}?\nA:",
    statement="{subject} is in the city of {answer}.",
    paraphrases=("Visitors to {answer} can see {subject}.", "{subject} is a famous sight in {answer}."),
    facts=_pairs("""
        the Eiffel Tower | Paris
        the Louvre | Paris
        the Arc de Triomphe | Paris
        the Colosseum | Rome
        the Trevi Fountain | Rome
        the Spanish Steps | Rome
        Big Ben | London
        Tower Bridge | London
        Buckingham Palace | London
        Westminster Abbey | London
        the British Museum | London
        the Statue of Liberty | New York
        the Empire State Building | New York
        Central Park | New York
        Times Square | New York
        the Golden Gate Bridge | San Francisco
        Alcatraz | San Francisco
        the Hollywood Sign | Los Angeles
        the Space Needle | Seattle
        the White House | Washington
        the Lincoln Memorial | Washington
        the Kremlin | Moscow
        Red Square | Moscow
        the Hermitage Museum | Saint Petersburg
        the Brandenburg Gate | Berlin
        the Sagrada Familia | Barcelona
        the Alhambra | Granada
        the Prado Museum | Madrid
        the Acropolis | Athens
        the Parthenon | Athens
        the Taj Mahal | Agra
        the Gateway of India | Mumbai
        the Forbidden City | Beijing
        Tiananmen Square | Beijing
        the Bund | Shanghai
        Shibuya Crossing | Tokyo
        the Grand Palace | Bangkok
        the Burj Khalifa | Dubai
        the Petronas Towers | Kuala Lumpur
        Marina Bay Sands | Singapore
        the CN Tower | Toronto
        Hagia Sophia | Istanbul
        the Blue Mosque | Istanbul
        the Atomium | Brussels
        the Manneken Pis | Brussels
        the Rijksmuseum | Amsterdam
        the Anne Frank House | Amsterdam
        the Charles Bridge | Prague
        the Rialto Bridge | Venice
        St. Mark's Basilica | Venice
        the Uffizi Gallery | Florence
        the Little Mermaid statue | Copenhagen
        Table Mountain | Cape Town
        the Gateway Arch | St. Louis
        the Alamo | San Antonio
        Schonbrunn Palace | Vienna
    """),
    invented=_lines("""
        the Velmora Spire
        the Quarrow Bridge
        the Tessvik Gate
        the Ombrel Tower
        the Haldric Palace
        the Korvath Fountain
        the Brisling Arch
        the Dunmere Basilica
        the Yarrowmet Museum
        the Sollen Steps
        the Pelgrath Column
        the Ardwyn Clock Tower
    """),
)

OFFICIAL_LANGUAGE = Relation(
    name="official_language",
    question="Q: What is the official language of {subject}?\nA:",
    statement="The official language of {subject} is {answer}.",
    paraphrases=("In {subject}, people speak {answer}.", "Schools in {subject} teach in {answer}."),
    facts=_pairs("""
        France | French
        Germany | German
        Austria | German
        Italy | Italian
        Spain | Spanish
        Mexico | Spanish
        Argentina | Spanish
        Colombia | Spanish
        Chile | Spanish
        Venezuela | Spanish
        Cuba | Spanish
        Portugal | Portuguese
        Brazil | Portuguese
        Angola | Portuguese
        Mozambique | Portuguese
        Japan | Japanese
        China | Chinese
        Russia | Russian
        Greece | Greek
        Turkey | Turkish
        Poland | Polish
        the Netherlands | Dutch
        Sweden | Swedish
        Norway | Norwegian
        Denmark | Danish
        Iceland | Icelandic
        Hungary | Hungarian
        the Czech Republic | Czech
        Slovakia | Slovak
        Romania | Romanian
        Bulgaria | Bulgarian
        Ukraine | Ukrainian
        Serbia | Serbian
        Croatia | Croatian
        Lithuania | Lithuanian
        Latvia | Latvian
        Estonia | Estonian
        Albania | Albanian
        Armenia | Armenian
        Iran | Persian
        Egypt | Arabic
        Saudi Arabia | Arabic
        Iraq | Arabic
        Syria | Arabic
        Jordan | Arabic
        Thailand | Thai
        Vietnam | Vietnamese
        South Korea | Korean
        North Korea | Korean
        Indonesia | Indonesian
        Malaysia | Malay
        Bangladesh | Bengali
        Mongolia | Mongolian
        Nepal | Nepali
        Cambodia | Khmer
        Laos | Lao
        Ethiopia | Amharic
        the United Kingdom | English
        Australia | English
        Jamaica | English
    """),
    invented=INVENTED_COUNTRIES,
)

ANIMAL_CLASS = Relation(
    name="animal_class",
    question="Q: What type of animal is the {subject}?\nA:",
    statement="The {subject} is {a_answer}.",
    paraphrases=(
        "Zoologists classify the {subject} as {a_answer}.",
        "Biologists count the {subject} among the {answer} species.",
    ),
    facts=_pairs("""
        lion | mammal
        tiger | mammal
        elephant | mammal
        giraffe | mammal
        zebra | mammal
        gorilla | mammal
        kangaroo | mammal
        koala | mammal
        giant panda | mammal
        polar bear | mammal
        wolf | mammal
        camel | mammal
        whale | mammal
        dolphin | mammal
        bat | mammal
        platypus | mammal
        eagle | bird
        penguin | bird
        ostrich | bird
        owl | bird
        parrot | bird
        flamingo | bird
        sparrow | bird
        peacock | bird
        swan | bird
        pelican | bird
        hummingbird | bird
        crocodile | reptile
        alligator | reptile
        turtle | reptile
        tortoise | reptile
        cobra | reptile
        python | reptile
        iguana | reptile
        chameleon | reptile
        Komodo dragon | reptile
        gecko | reptile
        salmon | fish
        shark | fish
        tuna | fish
        goldfish | fish
        trout | fish
        cod | fish
        seahorse | fish
        clownfish | fish
        eel | fish
        piranha | fish
        frog | amphibian
        toad | amphibian
        salamander | amphibian
        newt | amphibian
        axolotl | amphibian
        caecilian | amphibian
        ant | insect
        honeybee | insect
        butterfly | insect
        beetle | insect
        mosquito | insect
        grasshopper | insect
        dragonfly | insect
        ladybug | insect
        cockroach | insect
        wasp | insect
        termite | insect
    """),
    invented=_lines("""
        snarvel
        glimmerback
        quillot
        brandlewing
        torvik
        mossplume
        fennigrub
        zaltor
        drummet
        skelpin
        vorrel
        crindle
    """),
)

CONTINENT = Relation(
    name="continent",
    question="Q: On which continent is {subject}?\nA:",
    statement="{subject} is on the continent of {answer}.",
    paraphrases=("{subject} lies in {answer}.", "{subject} is a country in {answer}."),
    facts=_pairs("""
        France | Europe
        Germany | Europe
        Italy | Europe
        Spain | Europe
        Portugal | Europe
        Poland | Europe
        Sweden | Europe
        Norway | Europe
        Greece | Europe
        Ireland | Europe
        the Netherlands | Europe
        Austria | Europe
        Hungary | Europe
        Belgium | Europe
        Finland | Europe
        Japan | Asia
        China | Asia
        India | Asia
        Thailand | Asia
        Vietnam | Asia
        South Korea | Asia
        Nepal | Asia
        Mongolia | Asia
        Pakistan | Asia
        Bangladesh | Asia
        Saudi Arabia | Asia
        Iran | Asia
        Iraq | Asia
        Malaysia | Asia
        the Philippines | Asia
        Cambodia | Asia
        Afghanistan | Asia
        Nigeria | Africa
        Kenya | Africa
        Ethiopia | Africa
        Ghana | Africa
        Morocco | Africa
        Algeria | Africa
        Senegal | Africa
        Uganda | Africa
        Tanzania | Africa
        Zimbabwe | Africa
        Angola | Africa
        Mali | Africa
        Somalia | Africa
        Madagascar | Africa
        Cameroon | Africa
        Sudan | Africa
        Canada | North America
        Mexico | North America
        the United States | North America
        Cuba | North America
        Jamaica | North America
        Guatemala | North America
        Honduras | North America
        Haiti | North America
        Costa Rica | North America
        Brazil | South America
        Argentina | South America
        Chile | South America
        Peru | South America
        Colombia | South America
        Venezuela | South America
        Ecuador | South America
        Bolivia | South America
        Uruguay | South America
        Paraguay | South America
        Australia | Oceania
        New Zealand | Oceania
        Fiji | Oceania
        Papua New Guinea | Oceania
        Samoa | Oceania
        Tonga | Oceania
    """),
    invented=INVENTED_COUNTRIES,
)

CURRENCY = Relation(
    name="currency",
    question="Q: What is the currency of {subject}?\nA:",
    statement="The currency of {subject} is the {answer}.",
    paraphrases=("In {subject}, people pay with the {answer}.", "The money used in {subject} is the {answer}."),
    facts=_pairs("""
        Japan | yen
        China | yuan
        South Korea | won
        North Korea | won
        India | rupee
        Pakistan | rupee
        Nepal | rupee
        Russia | ruble
        the United Kingdom | pound
        Egypt | pound
        the United States | dollar
        Canada | dollar
        Australia | dollar
        New Zealand | dollar
        Mexico | peso
        Argentina | peso
        Chile | peso
        Colombia | peso
        the Philippines | peso
        Brazil | real
        South Africa | rand
        Turkey | lira
        Switzerland | franc
        Sweden | krona
        Poland | zloty
        Hungary | forint
        the Czech Republic | koruna
        Romania | leu
        Bulgaria | lev
        Ukraine | hryvnia
        Thailand | baht
        Vietnam | dong
        Indonesia | rupiah
        Malaysia | ringgit
        Bangladesh | taka
        Israel | shekel
        Saudi Arabia | riyal
        Qatar | riyal
        the United Arab Emirates | dirham
        Morocco | dirham
        Jordan | dinar
        Kuwait | dinar
        Iraq | dinar
        Algeria | dinar
        Serbia | dinar
        Nigeria | naira
        Ghana | cedi
        Kenya | shilling
        Peru | sol
        France | euro
        Germany | euro
        Italy | euro
        Spain | euro
        Greece | euro
        Ireland | euro
        the Netherlands | euro
        Portugal | euro
        Austria | euro
        Finland | euro
    """),
    invented=INVENTED_COUNTRIES,
)

PAINTING_PAINTER = Relation(
    name="painting_painter",
    question="Q: Who painted {subject}?\nA:",
    statement="{subject} was painted by {answer}.",
    paraphrases=("{subject} is a work by {answer}.", "The artist behind {subject} is {answer}."),
    facts=_pairs("""
        the Mona Lisa | da Vinci
        The Last Supper | da Vinci
        The Starry Night | van Gogh
        Sunflowers | van Gogh
        The Potato Eaters | van Gogh
        The Scream | Munch
        Guernica | Picasso
        Les Demoiselles d'Avignon | Picasso
        The Persistence of Memory | Dali
        The Birth of Venus | Botticelli
        Primavera | Botticelli
        The Night Watch | Rembrandt
        Girl with a Pearl Earring | Vermeer
        The Milkmaid | Vermeer
        the ceiling of the Sistine Chapel | Michelangelo
        The School of Athens | Raphael
        Water Lilies | Monet
        Impression, Sunrise | Monet
        American Gothic | Wood
        The Great Wave off Kanagawa | Hokusai
        Las Meninas | Velazquez
        The Garden of Earthly Delights | Bosch
        The Third of May 1808 | Goya
        Liberty Leading the People | Delacroix
        The Arnolfini Portrait | van Eyck
        Nighthawks | Hopper
        Campbell's Soup Cans | Warhol
        The Son of Man | Magritte
        The Hay Wain | Constable
        The Fighting Temeraire | Turner
        Wanderer above the Sea of Fog | Friedrich
        The Card Players | Cezanne
        A Sunday Afternoon on the Island of La Grande Jatte | Seurat
        Luncheon of the Boating Party | Renoir
        Olympia | Manet
        The Gleaners | Millet
        The Raft of the Medusa | Gericault
        The Dance | Matisse
        Broadway Boogie Woogie | Mondrian
        Christina's World | Wyeth
    """),
    invented=_lines("""
        The Harbor at Quellin
        Evening in Varosca
        The Drowned Orchard of Mell
        Portrait of Ilsa Trevanne
        The Lantern Bearers of Osk
        Storm over Bardwick
        The Weavers of Tollan Vey
        Girl with a Brass Kestrel
        The Feast at Marrowgate
        Morning on the Ostrel
        The Blue Hours of Senn
        The Ferryman of Kaldmere
    """),
)

MOON_PLANET = Relation(
    name="moon_planet",
    question="Q: Which planet does {subject} orbit?\nA:",
    statement="{subject} orbits {answer}.",
    paraphrases=("{subject} is a moon of {answer}.", "{subject} travels around {answer}."),
    facts=_pairs("""
        Phobos | Mars
        Deimos | Mars
        Io | Jupiter
        Europa | Jupiter
        Ganymede | Jupiter
        Callisto | Jupiter
        Amalthea | Jupiter
        Himalia | Jupiter
        Titan | Saturn
        Enceladus | Saturn
        Mimas | Saturn
        Rhea | Saturn
        Iapetus | Saturn
        Dione | Saturn
        Tethys | Saturn
        Hyperion | Saturn
        Phoebe | Saturn
        Titania | Uranus
        Oberon | Uranus
        Miranda | Uranus
        Ariel | Uranus
        Umbriel | Uranus
        Puck | Uranus
        Triton | Neptune
        Nereid | Neptune
        Proteus | Neptune
        Larissa | Neptune
    """),
    invented=_lines("""
        Vessaro
        Thalindra
        Korrigel
        Ombrisa
        Zephyne
        Iskarel
        Murvane
        Orvanna
        Quelline
        Drovasse
        Belthari
        Sunnaveth
    """),
)

RELATIONS: dict[str, Relation] = {
    relation.name: relation
    for relation in (
        CAPITAL,
        ELEMENT_SYMBOL,
        BOOK_AUTHOR,
        LANDMARK_CITY,
        OFFICIAL_LANGUAGE,
        ANIMAL_CLASS,
        CONTINENT,
        CURRENCY,
        PAINTING_PAINTER,
        MOON_PLANET,
    )
}
