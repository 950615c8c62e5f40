"""The ticketing platform as a source: its tables, read in chunks, as normalised records."""

from daemon.source.entities import Customer, Event, Money, Order, SourceRecord, Stock, Venue
from daemon.source.reader import SourceReader, UnknownVenue
from daemon.source.settings import SourceSettings

__all__ = [
    "Customer",
    "Event",
    "Money",
    "Order",
    "SourceReader",
    "SourceRecord",
    "SourceSettings",
    "Stock",
    "UnknownVenue",
    "Venue",
]
