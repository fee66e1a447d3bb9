"""pyshark_tools: SMTP/STARTTLS client-certificate investigation from packet captures."""

__version__ = "0.1.0"
