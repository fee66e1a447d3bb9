"""Mail servers' own logs as a further source: Exchange protocol logs, Postfix, Exim.

``read_logs`` turns log files into sessions in the conversations' vocabulary (with findings
whose evidence is the log's own ``file:line``); ``join.join_logs`` attaches them to a
capture's conversations and fills in what the capture could not see.
"""

from ..errors import LogsUnreadable
from .model import LogFormat, LogRole, LogSession
from .reader import LogReport, read_logs

__all__ = ["LogFormat", "LogReport", "LogRole", "LogSession", "LogsUnreadable", "read_logs"]
