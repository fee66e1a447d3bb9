"""The Wireshark integration: installing the SMTP-TLS-Certs profile and the Lua post-dissector
(``install``) and its ``tls-smtp-report wireshark`` commands (``commands``)."""
