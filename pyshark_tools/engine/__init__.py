"""Reading captures: tshark (supervised, ``tshark``/``tshark_rows``), the fast engine's index
(``scan``) and per-packet loop (``prefilter``) over one declaration of the file formats
(``capture_format``), the native reader (``native``) and the shards (``parallel``,
``forking``). Everything here produces ``core.events.Extraction``.
"""
