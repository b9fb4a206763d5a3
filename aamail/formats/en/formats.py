"""Date formats of the console: every time names its zone (issue 12, the browser walk).

The office box shows times in its TIME_ZONE; "T" adds the zone's abbreviation ("CET",
"UTC"), so nobody has to guess whether 14:03 is local time or the server's.
"""

DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i"
DATETIME_INPUT_FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
DATE_INPUT_FORMATS = ["%Y-%m-%d"]
