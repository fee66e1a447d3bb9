"""Reading captures: tshark (supervised, ``tshark``/``tshark_rows``), the fast engine's index
(``scan``), per-packet loop (``prefilter``), native reader (``native``) and shards
(``parallel``, ``forking``). Everything here produces ``core.events.Extraction``.
"""
