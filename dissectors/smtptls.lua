-- smtptls.lua: SMTP/TLS client-certificate post-dissector for Wireshark / tshark 4.0-4.4.
--
-- Answers, on the frames that matter, "did the SMTP client present its TLS certificate?"
-- (the Exchange Online "550 5.7.64 TenantAttribution; Relay Access Denied" investigation).
-- Fields live under "smtptls."; the verdict strings are the ClientCert vocabulary of
-- pyshark_tools/core/schema.py:
--   presented, empty, not_requested, hidden_tls13, hidden_renegotiation, resumed, no_tls,
--   handshake_failed, not_captured
-- This file decides those verdicts on its own (it does not call the Python analyzer):
-- the two implementations are tested against each other.
--
-- smtptls.verdict is added to every frame of the TCP stream from the frame that decides
-- it; with two passes (tshark -2, or the Wireshark GUI once the file is loaded) it is on
-- every frame of the stream.  Pure Lua 5.2-5.4, no bit library; every packet is handled
-- inside pcall so malformed or partial packets never raise an error.
--
-- Install: copy into the personal Lua plugins folder (Help > About Wireshark > Folders),
-- or run `tls-smtp-report wireshark install`.

local ok_proto, smtptls = pcall(Proto, "smtptls", "SMTP/TLS client certificate")
if not ok_proto then
    -- Already loaded (for example both from the plugins folder and with -X lua_script).
    return
end

local VERSION = "1.0.0"

----------------------------------------------------------------------------------------
-- Fields
----------------------------------------------------------------------------------------
local pf = {
    role = ProtoField.string("smtptls.role", "Sender role",
        base.ASCII, "client or server: who sent this frame"),
    verdict = ProtoField.string("smtptls.verdict", "Client certificate verdict (stream)",
        base.ASCII, "Conversation verdict (ClientCert vocabulary)"),
    client_cert = ProtoField.string("smtptls.client_cert", "Client certificate",
        base.ASCII, "Verdict, on the frame that decides it"),
    decided_in = ProtoField.framenum("smtptls.decided_in", "Verdict decided in frame",
        base.NONE, frametype.NONE),
    client_cert_count = ProtoField.uint32("smtptls.client_cert_count",
        "Client certificates in the Certificate message", base.DEC),
    cert_requested = ProtoField.bool("smtptls.cert_requested",
        "Server sent a CertificateRequest", base.NONE),
    cert_count = ProtoField.uint32("smtptls.cert_count",
        "Certificates in this Certificate message", base.DEC),
    leaf_subject = ProtoField.string("smtptls.leaf_subject", "Leaf subject",
        base.UNICODE, "RFC 4514 subject of the first certificate"),
    leaf_issuer = ProtoField.string("smtptls.leaf_issuer", "Leaf issuer", base.UNICODE),
    leaf_not_before = ProtoField.absolute_time("smtptls.leaf_not_before",
        "Leaf notBefore", base.UTC),
    leaf_not_after = ProtoField.absolute_time("smtptls.leaf_not_after",
        "Leaf notAfter", base.UTC),
    expired = ProtoField.bool("smtptls.expired",
        "Leaf expired at capture time", base.NONE),
    not_yet_valid = ProtoField.bool("smtptls.not_yet_valid",
        "Leaf not yet valid at capture time", base.NONE),
    self_signed = ProtoField.bool("smtptls.self_signed",
        "Leaf is self-signed (issuer == subject)", base.NONE),
    parse_error = ProtoField.string("smtptls.parse_error", "Certificate parse error",
        base.ASCII),
    exo = ProtoField.bool("smtptls.exo", "Exchange Online peer", base.NONE,
        nil, nil, "The server named itself *.mail.protection.outlook.com"),
    version = ProtoField.string("smtptls.version", "Negotiated TLS version", base.ASCII),
    starttls = ProtoField.bool("smtptls.starttls", "STARTTLS command or its reply",
        base.NONE),
    problem = ProtoField.string("smtptls.problem", "Problem", base.ASCII),
}
local field_list = {}
for _, f in pairs(pf) do field_list[#field_list + 1] = f end
smtptls.fields = field_list

local ef = {
    empty = ProtoExpert.new("smtptls.expert.empty_client_cert",
        "Empty client Certificate: the SMTP client presented NO certificate",
        expert.group.SECURITY, expert.severity.WARN),
    not_requested = ProtoExpert.new("smtptls.expert.not_requested",
        "The server never sent a CertificateRequest: no client certificate was asked for",
        expert.group.SECURITY, expert.severity.WARN),
    expired = ProtoExpert.new("smtptls.expert.expired",
        "Certificate expired (or not yet valid) at capture time",
        expert.group.SECURITY, expert.severity.WARN),
    self_signed = ProtoExpert.new("smtptls.expert.self_signed",
        "Self-signed client certificate: not publicly trusted",
        expert.group.SECURITY, expert.severity.WARN),
    tls13 = ProtoExpert.new("smtptls.expert.tls13_hidden",
        "TLS 1.3: certificates are encrypted; supply a key log to see the client certificate",
        expert.group.SECURITY, expert.severity.NOTE),
    renegotiation = ProtoExpert.new("smtptls.expert.renegotiation_hidden",
        "TLS renegotiated inside the session: the second handshake is encrypted; supply a "
            .. "key log to see whether the client sent a certificate in it",
        expert.group.SECURITY, expert.severity.NOTE),
    resumed = ProtoExpert.new("smtptls.expert.resumed",
        "Resumed TLS session: no certificates exchanged; look at the full handshake",
        expert.group.SECURITY, expert.severity.NOTE),
    failed = ProtoExpert.new("smtptls.expert.handshake_failed",
        "TLS handshake ended before the client's Certificate",
        expert.group.SECURITY, expert.severity.WARN),
    tenant = ProtoExpert.new("smtptls.expert.tenant_attribution",
        "550 5.7.64 TenantAttribution: Exchange Online matched no inbound connector",
        expert.group.SECURITY, expert.severity.ERROR),
}
smtptls.experts = { ef.empty, ef.not_requested, ef.expired, ef.self_signed, ef.tls13,
    ef.renegotiation, ef.resumed, ef.failed, ef.tenant }

----------------------------------------------------------------------------------------
-- Field extractors
----------------------------------------------------------------------------------------
local function field(name)
    local ok, f = pcall(Field.new, name)
    if ok then return f end
    return nil
end

local f_frame = field("frame.number")
local f_stream = field("tcp.stream")
local f_len = field("frame.len")
local f_caplen = field("frame.cap_len")
local f_lost = field("tcp.analysis.lost_segment")
local f_syn = field("tcp.flags.syn")
local f_ack = field("tcp.flags.ack")
local f_fin = field("tcp.flags.fin")
local f_rst = field("tcp.flags.reset")
local f_ctype = field("tls.record.content_type")
local f_hstype = field("tls.handshake.type")
local f_cert = field("tls.handshake.certificate")
local f_cc_len = field("tls.compress_certificate.uncompressed_length")
local f_cc_alg = field("tls.compress_certificate.algorithm")
local f_cc_msg = field("tls.compress_certificate.compressed_certificate_message")
local f_hsver = field("tls.handshake.version")
local f_supver = field("tls.handshake.extensions.supported_version")
local f_exttype = field("tls.handshake.extension.type")
local f_alevel = field("tls.alert_message.level")
local f_adesc = field("tls.alert_message.desc")
local f_sni = field("tls.handshake.extensions_server_name")
local f_smtp_req = field("smtp.req")
local f_smtp_rsp = field("smtp.rsp")
local f_smtp_cmdline = field("smtp.command_line")
local f_smtp_cmd = field("smtp.req.command")
local f_smtp_code = field("smtp.response.code")
local f_smtp_rspparam = field("smtp.rsp.parameter")

local function all(f)
    if not f then return {} end
    local ok, r = pcall(function() return { f() } end)
    if ok then return r end
    return {}
end

local function values(f)
    local out = {}
    for i, fi in ipairs(all(f)) do
        local ok, v = pcall(function() return fi.value end)
        if ok then out[#out + 1] = v end
        if i > 200 then break end
    end
    return out
end

local function first(f)
    local v = values(f)
    return v[1]
end

local function has(list, x)
    for _, v in ipairs(list) do
        if v == x then return true end
    end
    return false
end

----------------------------------------------------------------------------------------
-- DER / X.509 (just enough for subject, issuer, validity)
----------------------------------------------------------------------------------------
local function der_read(s, pos, limit)
    limit = limit or #s
    local tag = s:byte(pos)
    local len = s:byte(pos + 1)
    if not tag or not len or pos + 1 > limit then error("truncated DER") end
    if tag % 32 == 31 then error("multi-byte DER tag") end
    local p = pos + 2
    if len >= 128 then
        local n = len - 128
        if n == 0 or n > 4 then error("bad DER length") end
        len = 0
        for _ = 1, n do
            local b = s:byte(p)
            if not b then error("truncated DER") end
            len = len * 256 + b
            p = p + 1
        end
    end
    local e = p + len - 1
    if e > limit then error("DER element runs past its container") end
    return tag, p, e, e + 1
end

local function utf8_char(cp)
    if cp < 0x80 then return string.char(cp) end
    if cp < 0x800 then
        return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
    end
    if cp < 0x10000 then
        return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64,
            0x80 + cp % 64)
    end
    return string.char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
        0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

local function decode_string(tag, raw)
    if tag == 0x1E then -- BMPString, UTF-16BE
        local out, i = {}, 1
        while i + 1 <= #raw do
            local cp = raw:byte(i) * 256 + raw:byte(i + 1)
            i = i + 2
            if cp >= 0xD800 and cp <= 0xDBFF and i + 1 <= #raw then
                local lo = raw:byte(i) * 256 + raw:byte(i + 1)
                i = i + 2
                cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00)
            end
            out[#out + 1] = utf8_char(cp)
        end
        return table.concat(out)
    elseif tag == 0x1C then -- UniversalString, UTF-32BE
        local out = {}
        for i = 1, #raw - 3, 4 do
            local b1, b2, b3, b4 = raw:byte(i, i + 3)
            out[#out + 1] = utf8_char(((b1 * 256 + b2) * 256 + b3) * 256 + b4)
        end
        return table.concat(out)
    elseif tag == 0x14 then -- T61String: read as Latin-1
        local out = {}
        for i = 1, #raw do out[#out + 1] = utf8_char(raw:byte(i)) end
        return table.concat(out)
    end
    return raw -- UTF8String, PrintableString, IA5String, VisibleString, NumericString
end

local function decode_oid(raw)
    local parts, v = {}, 0
    for i = 1, #raw do
        local b = raw:byte(i)
        v = v * 128 + (b % 128)
        if b < 128 then
            if #parts == 0 then
                local a = (v < 80) and math.floor(v / 40) or 2
                parts[1] = tostring(a)
                parts[2] = string.format("%d", v - 40 * a)
            else
                parts[#parts + 1] = string.format("%d", v)
            end
            v = 0
        end
    end
    return table.concat(parts, ".")
end

-- Same short names and escaping as Python cryptography's Name.rfc4514_string().
local OID_NAMES = {
    ["2.5.4.3"] = "CN", ["2.5.4.7"] = "L", ["2.5.4.8"] = "ST", ["2.5.4.10"] = "O",
    ["2.5.4.11"] = "OU", ["2.5.4.6"] = "C", ["2.5.4.9"] = "STREET",
    ["0.9.2342.19200300.100.1.25"] = "DC", ["0.9.2342.19200300.100.1.1"] = "UID",
}

local function escape_dn(v)
    if v == "" then return "" end
    v = v:gsub("\\", "\\\\"):gsub('"', '\\"'):gsub("%+", "\\+"):gsub(",", "\\,")
    v = v:gsub(";", "\\;"):gsub("<", "\\<"):gsub(">", "\\>"):gsub("%z", "\\00")
    local c = v:sub(1, 1)
    if c == "#" or c == " " then v = "\\" .. v end
    if v:sub(-1) == " " then v = v:sub(1, -2) .. "\\ " end
    return v
end

local function parse_name(s, p, e)
    local rdns = {}
    while p <= e do
        local tag, sp, se, nxt = der_read(s, p, e)
        if tag ~= 0x31 then error("RDN is not a SET") end
        local attrs = {}
        local q = sp
        while q <= se do
            local t2, ap, ae, anext = der_read(s, q, se)
            if t2 ~= 0x30 then error("attribute is not a SEQUENCE") end
            local t3, op, oe, vpos = der_read(s, ap, ae)
            if t3 ~= 0x06 then error("attribute type is not an OID") end
            local oid = decode_oid(s:sub(op, oe))
            local t4, vp, ve = der_read(s, vpos, ae)
            local name = OID_NAMES[oid] or oid
            attrs[#attrs + 1] = name .. "=" .. escape_dn(decode_string(t4, s:sub(vp, ve)))
            q = anext
        end
        rdns[#rdns + 1] = table.concat(attrs, "+")
        p = nxt
    end
    local out = {}
    for i = #rdns, 1, -1 do out[#out + 1] = rdns[i] end
    return table.concat(out, ",")
end

local function days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = math.floor(y / 400)
    local yoe = y - era * 400
    local mp = (m + 9) % 12
    local doy = math.floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
end

local function parse_time(tag, str)
    local y, rest
    if tag == 0x17 then -- UTCTime YYMMDDHHMM[SS]Z
        y = tonumber(str:sub(1, 2))
        if not y then error("bad UTCTime") end
        y = (y >= 50) and (1900 + y) or (2000 + y)
        rest = str:sub(3)
    elseif tag == 0x18 then -- GeneralizedTime YYYYMMDDHHMM[SS][.fff]Z
        y = tonumber(str:sub(1, 4))
        if not y then error("bad GeneralizedTime") end
        rest = str:sub(5)
    else
        error("unknown time type")
    end
    local mo, d = tonumber(rest:sub(1, 2)), tonumber(rest:sub(3, 4))
    local h, mi = tonumber(rest:sub(5, 6)), tonumber(rest:sub(7, 8))
    local sec = tonumber(rest:sub(9, 10)) or 0
    if not (mo and d and h and mi) then error("bad time") end
    return math.floor(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec)
end

local function parse_cert(der)
    local _, cp, ce = der_read(der, 1)
    local _, tp, te = der_read(der, cp, ce)
    local p = tp
    local tag, _, _, nxt = der_read(der, p, te)
    if tag == 0xA0 then -- [0] version
        p = nxt
        tag, _, _, nxt = der_read(der, p, te)
    end
    p = nxt                                      -- serialNumber
    _, _, _, p = der_read(der, p, te)            -- signature AlgorithmIdentifier
    local _, ip, ie, n2 = der_read(der, p, te)   -- issuer
    local issuer_raw = der:sub(ip, ie)
    local _, vp, ve, n3 = der_read(der, n2, te)  -- validity
    local t1, b1, e1, n4 = der_read(der, vp, ve)
    local t2, b2, e2 = der_read(der, n4, ve)
    local _, sp, se = der_read(der, n3, te)      -- subject
    return {
        subject = parse_name(der, sp, se),
        issuer = parse_name(der, ip, ie),
        not_before = parse_time(t1, der:sub(b1, e1)),
        not_after = parse_time(t2, der:sub(b2, e2)),
        self_signed = (issuer_raw == der:sub(sp, se)),
    }
end

local function bytes_of(v)
    if type(v) == "string" then return v end
    local ok, raw = pcall(function() return v:raw() end)
    if ok and raw then return raw end
    -- Older builds: through the hex string
    local hex = tostring(v):gsub("[^%x]", "")
    return (hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

----------------------------------------------------------------------------------------
-- TLS 1.3 CompressedCertificate (RFC 8879): tshark shows it but not the certificates inside
----------------------------------------------------------------------------------------
-- Per algorithm (1 zlib, 2 brotli, 3 zstd), the TvbRange methods that may open it: Wireshark
-- 4.2+ names them per algorithm, 4.0 has only uncompress (zlib); a build without the library
-- has no method, and the certificates stay unread.
local UNCOMPRESS = {
    [1] = { "uncompress_zlib", "uncompress" },
    [2] = { "uncompress_brotli" },
    [3] = { "uncompress_zstd" },
}

-- The longest TLS 1.3 Certificate body without a certificate: 1 + 255 context bytes + the
-- 3-byte list length. A longer one holds at least one certificate.
local LONGEST_EMPTY_TLS13_CERTIFICATE = 259

local function uint(s, p, n)
    local v = 0
    for i = p, p + n - 1 do
        local b = s:byte(i)
        if not b then return nil end
        v = v * 256 + b
    end
    return v
end

-- The DER certificates of a TLS 1.3 Certificate body (context, then a list of certificate
-- and extensions entries); nil when the body is damaged.
local function tls13_certificates(body)
    local ctx = uint(body, 1, 1)
    if not ctx then return nil end
    local p = 2 + ctx
    local total = uint(body, p, 3)
    if not total then return nil end
    p = p + 3
    local stop = p + total - 1
    if stop ~= #body then return nil end
    local certs = {}
    while p <= stop do
        local n = uint(body, p, 3)
        if not n or p + 2 + n > stop then return nil end
        certs[#certs + 1] = body:sub(p + 3, p + 2 + n)
        p = p + 3 + n
        local ext = uint(body, p, 2)
        if not ext then return nil end
        p = p + 2 + ext
        if #certs > 1000 then return nil end
    end
    if p ~= stop + 1 then return nil end
    return certs
end

-- The certificates of the frame's first CompressedCertificate, decompressed by Wireshark;
-- nil when this build cannot open it (algorithm, library) or it is damaged.
local function compressed_certificates(declared)
    local messages = all(f_cc_msg)
    if #messages == 0 then return nil end
    -- the algorithm field also lists what a ClientHello or CertificateRequest in the same
    -- frame offered: those come first, each message's own algorithm last
    local algorithms = values(f_cc_alg)
    local algorithm = algorithms[#algorithms - #messages + 1]
    local ok_range, range = pcall(function() return messages[1].range end)
    if not ok_range or not range then return nil end
    for _, method in ipairs(UNCOMPRESS[algorithm] or {}) do
        local ok, out = pcall(function() return range[method](range, "CompressedCertificate") end)
        if ok and out then
            local ok_raw, body = pcall(function() return out:range():raw() end)
            if ok_raw and body and (declared == nil or #body == declared) then
                return tls13_certificates(body)
            end
        end
    end
    return nil
end

----------------------------------------------------------------------------------------
-- Per-stream state. Every fact is "the first frame where X was seen" (min of frame
-- numbers), so dissecting a frame again never changes anything: re-dissection safe.
----------------------------------------------------------------------------------------
local streams = {}
local first_pass_max = 0

-- tshark -2 runs the init routines again before its second pass, so the state is not
-- wiped here: it is wiped when a new first (not yet visited) pass starts over, that is
-- when an unvisited frame is not beyond the last unvisited frame seen.
function smtptls.init()
end

-- `tshark -2` builds no protocol tree in its first pass unless it has a read filter
-- (-R), so field extractors see nothing there. Then the second pass is treated like a
-- single pass (verdicts from the deciding frame on); `tshark -2 -R frame` gives the
-- complete answer on every frame, as the Wireshark GUI does.
local first_pass_had_fields = false

local function start_frame(pinfo, have_fields)
    if not pinfo.visited then
        if pinfo.number <= first_pass_max then
            streams = {}
            first_pass_had_fields = false
        end
        first_pass_max = pinfo.number
        if have_fields then first_pass_had_fields = true end
    end
    return pinfo.visited and first_pass_had_fields
end

local function note(st, key, fnum)
    local v = st[key]
    if v == nil or fnum < v then st[key] = fnum end
end

local function endpoint(addr, port)
    return tostring(addr) .. "|" .. tostring(port)
end

local ALERTS = {
    [0] = "close_notify", [10] = "unexpected_message", [20] = "bad_record_mac",
    [40] = "handshake_failure", [41] = "no_certificate", [42] = "bad_certificate",
    [43] = "unsupported_certificate", [44] = "certificate_revoked",
    [45] = "certificate_expired", [46] = "certificate_unknown",
    [47] = "illegal_parameter", [48] = "unknown_ca", [49] = "access_denied",
    [50] = "decode_error", [51] = "decrypt_error", [70] = "protocol_version",
    [71] = "insufficient_security", [80] = "internal_error", [86] = "inappropriate_fallback",
    [90] = "user_canceled", [109] = "missing_extension", [112] = "unrecognized_name",
    [116] = "certificate_required",
}

local VERSIONS = {
    [0x0300] = "SSL 3.0", [0x0301] = "TLS 1.0", [0x0302] = "TLS 1.1",
    [0x0303] = "TLS 1.2", [0x0304] = "TLS 1.3",
}

local function lower_contains(s, needle)
    return type(s) == "string" and s:lower():find(needle, 1, true) ~= nil
end

local EXO = "mail.protection.outlook.com"

-- Record what this frame shows about its stream (idempotent).
local function record(st, fnum, pinfo, fr)
    local src = endpoint(pinfo.src, pinfo.src_port)
    local dst = endpoint(pinfo.dst, pinfo.dst_port)

    -- Who is the client? SYN sender, else ClientHello sender, else the SMTP side.
    if not st.client then
        if fr.syn and not fr.ack then st.client = src
        elseif fr.syn and fr.ack then st.client = dst
        elseif has(fr.hstypes, 1) then st.client = src
        elseif has(fr.hstypes, 2) then st.client = dst
        elseif fr.smtp_req then st.client = src
        elseif fr.smtp_rsp then st.client = dst
        elseif #fr.ctypes > 0 then
            -- Mid-stream TLS without a handshake in view: the higher port is the client's.
            if (tonumber(pinfo.src_port) or 0) > (tonumber(pinfo.dst_port) or 0) then
                st.client = src
            else
                st.client = dst
            end
        end
    end
    st.last = math.max(st.last or 0, fnum)
    if fr.fin or fr.rst then note(st, "fin_rst", fnum) end
    if fr.gap then note(st, "gap", fnum) end
    local from_client = (st.client == src)
    if not st.client then return nil end

    local tls = #fr.ctypes > 0 or #fr.hstypes > 0
    if tls then note(st, "tls", fnum) end

    -- SMTP
    if fr.smtp_req or fr.smtp_rsp or #fr.codes > 0 then note(st, "smtp", fnum) end
    if from_client then
        for _, line in ipairs(fr.cmdlines) do
            if type(line) == "string" and line:upper():find("^%s*STARTTLS") then
                note(st, "starttls_req", fnum)
            end
        end
        for _, c in ipairs(fr.cmds) do
            local cu = type(c) == "string" and c:upper() or ""
            if cu == "STAR" then note(st, "starttls_req", fnum) end
            if not tls and (cu == "MAIL" or cu == "RCPT" or cu == "DATA" or cu == "QUIT"
                    or cu == "BDAT") then
                note(st, "clear_mail", fnum)
            end
        end
    else
        if #fr.codes > 0 and st.starttls_req and st.starttls_req < fnum then
            if st.starttls_rsp == nil or st.starttls_rsp == fnum then
                st.starttls_rsp = fnum
                if fr.codes[1] == 220 then note(st, "starttls_ok", fnum) end
            end
        end
        for _, p in ipairs(fr.rspparams) do
            if lower_contains(p, EXO) then note(st, "exo", fnum) end
        end
        if fr.leaf and lower_contains(fr.leaf.subject, EXO) then note(st, "exo", fnum) end
    end
    for _, s in ipairs(fr.snis) do
        if lower_contains(s, EXO) then note(st, "exo", fnum) end
    end

    -- TLS handshake messages
    for _, t in ipairs(fr.hstypes) do
        if from_client then
            if t == 1 then
                note(st, "ch", fnum)
                -- a ClientHello after the ServerHello: a renegotiation (TLS 1.2 and older),
                -- readable because tshark decrypted it
                if st.sh and fnum > st.sh then note(st, "ch2", fnum) end
            elseif t == 11 or t == 25 then
                -- 25: CompressedCertificate (RFC 8879), opened where this build can
                note(st, "cli_cert", fnum)
                if st.cli_cert == fnum then
                    st.cli_cert_count = fr.cert_count
                    st.cli_cert_unread = (fr.cert_count == nil) and (fr.cc_len or 0) or nil
                end
                -- after a readable renegotiation, the second handshake's Certificate counts
                if st.ch2 and fnum > st.ch2 then
                    note(st, "cli_cert2", fnum)
                    if st.cli_cert2 == fnum then
                        st.cli_cert2_count = fr.cert_count
                        st.cli_cert2_unread = (fr.cert_count == nil) and (fr.cc_len or 0) or nil
                    end
                end
            elseif t == 16 then note(st, "cli_kx", fnum)
            elseif t == 15 then note(st, "cli_cv", fnum)
            elseif t == 20 then note(st, "cli_fin", fnum)
            end
        else
            if t == 2 then
                note(st, "sh", fnum)
                if st.sh == fnum then
                    local v = fr.supver or fr.hsver
                    st.version_num = v
                    st.psk = has(fr.exttypes, 41)
                end
            elseif t == 8 then note(st, "dec13", fnum)
            elseif t == 11 or t == 25 then note(st, "srv_cert", fnum)
            elseif t == 13 then note(st, "certreq", fnum)
            elseif t == 14 then note(st, "shd", fnum)
            elseif t == 20 then note(st, "srv_fin", fnum)
            end
        end
    end
    for _, c in ipairs(fr.ctypes) do
        if c == 20 then
            local side = from_client and "cli_ccs" or "srv_ccs"
            note(st, side, fnum)
            -- a second ChangeCipherSpec from the same side ends a second handshake: a
            -- renegotiation, seen even when its messages are encrypted (no key log)
            if st[side] < fnum then note(st, side .. "2", fnum) end
        elseif c == 23 then note(st, from_client and "cli_app" or "srv_app", fnum)
        end
    end
    -- Alerts: a fatal (or encrypted, level unknown) alert ends the handshake;
    -- SSLv3's no_certificate warning is the client declining a CertificateRequest.
    local n_alert_records = 0
    for _, c in ipairs(fr.ctypes) do if c == 21 then n_alert_records = n_alert_records + 1 end end
    if n_alert_records > 0 then
        local ends = (#fr.alevels == 0) -- encrypted alert
        for i, lvl in ipairs(fr.alevels) do
            local d = fr.adescs[i]
            if d == 41 and from_client then note(st, "cli_nocert", fnum)
            elseif lvl == 2 or d == 0 then ends = true
            end
        end
        if ends then note(st, "alert", fnum) end
    end
    return from_client
end

-- A client Certificate message's verdict: by its certificate count, or for a
-- CompressedCertificate this build could not open by its uncompressed length (no count:
-- longer than an empty one can be, it holds a certificate; else the capture cannot tell).
local function certificate_verdict(count, unread_length)
    if count == nil and unread_length ~= nil then
        return (unread_length > LONGEST_EMPTY_TLS13_CERTIFICATE) and "presented"
            or "not_captured"
    end
    return ((count or 0) > 0) and "presented" or "empty"
end

local function ver_str(st)
    return st.version_num and VERSIONS[st.version_num] or nil
end

-- The verdict of the first handshake as known from the frames up to `upto` (all frames
-- when final). Returns verdict, deciding frame.
local function decide_handshake(st, upto, final)
    local function seen(k)
        local v = st[k]
        if v ~= nil and v <= upto then return v end
        return nil
    end
    local function minf(...)
        local m
        for _, k in ipairs({ ... }) do
            local v = seen(k)
            if v and (m == nil or v < m) then m = v end
        end
        return m
    end
    local ended = minf("alert", "fin_rst")

    local cc = seen("cli_cert")
    if cc then
        return certificate_verdict(st.cli_cert_count, st.cli_cert_unread), cc
    end

    local sh = seen("sh")
    if sh and st.version_num == 0x0304 then
        if st.psk then return "resumed", sh end
        local dec = minf("dec13", "srv_cert", "certreq", "srv_fin")
        if dec then
            local cr = seen("certreq")
            if cr then
                local cf = minf("cli_cv", "cli_fin")
                if cf then return "empty", cf end
            else
                local sf = seen("srv_fin")
                if sf then return "not_requested", sf end
            end
            if ended then return "handshake_failed", ended end
            if final then return "not_captured", st.last end
            return nil
        end
        -- Encrypted records that were not decrypted: from the server after its
        -- ServerHello, or from the client (its second flight comes only after the whole
        -- server flight, which a key log would have decrypted by then).
        local sa = seen("srv_app")
        if sa and sa >= sh then return "hidden_tls13", sa end
        local ca = seen("cli_app")
        if ca and ca > sh then return "hidden_tls13", ca end
        local al = seen("alert")
        if al and al >= sh then return "handshake_failed", al end
        local fr = seen("fin_rst")
        if fr and fr > sh then return "hidden_tls13", fr end
        if final then return "hidden_tls13", sh end
        return nil
    end

    if sh then
        local sccs = seen("srv_ccs")
        local shd, scert = seen("shd"), seen("srv_cert")
        if sccs and (shd == nil or shd > sccs) and (scert == nil or scert > sccs) then
            return "resumed", sccs
        end
        -- The server's flight ended (ServerHelloDone) without a CertificateRequest: the
        -- server did not ask, whatever happens next.
        local cr0 = seen("certreq")
        if shd and (cr0 == nil or cr0 > shd) and (ended == nil or shd <= ended) then
            return "not_requested", shd
        end
        local cf = minf("cli_kx", "cli_ccs", "cli_cv", "cli_nocert")
        if cf and (ended == nil or cf <= ended) then
            local cr = seen("certreq")
            if seen("cli_nocert") or (cr and cr <= cf) then return "empty", cf end
            if shd and shd <= cf then return "not_requested", cf end
            return "not_captured", cf
        end
        -- Application data after the ServerHello: the handshake went through, but the
        -- client's flight was not in the capture (cut packets, lost segments).
        local app = minf("cli_app", "srv_app")
        if app and app > sh then return "not_captured", app end
        if ended then
            local gap = seen("gap")
            if gap and gap <= ended then return "not_captured", ended end
            return "handshake_failed", ended
        end
        if final then return "not_captured", st.last end
        return nil
    end

    local ch = seen("ch")
    if ch then
        if ended and ended >= ch then
            local gap = seen("gap")
            if gap and gap <= ended then return "not_captured", ended end
            return "handshake_failed", ended
        end
        local any_srv = minf("srv_app", "srv_ccs", "srv_cert")
        if any_srv then return "not_captured", any_srv end
        if final then return "not_captured", st.last end
        return nil
    end

    local tls = seen("tls")
    if tls then
        -- TLS records without a ClientHello or ServerHello: the capture began mid-stream.
        local app = minf("cli_app", "srv_app")
        if app then return "not_captured", app end
        if final then return "not_captured", st.last end
        return nil
    end

    if seen("smtp") then
        local cm = seen("clear_mail")
        if cm then return "no_tls", cm end
        if ended then return "no_tls", ended end
        if final then return "no_tls", st.last end
    end
    return nil
end

-- The verdict once a TLS 1.2 renegotiation is taken into account (TLS 1.3 has none).
-- Decrypted (a ClientHello after the ServerHello): the second handshake's client
-- Certificate decides where there is one. Encrypted (only a second ChangeCipherSpec
-- shows): "no certificate" from the first handshake no longer holds, the certificate may
-- have travelled in the second: hidden_renegotiation, decided where the renegotiation shows.
local function decide(st, upto, final)
    local verdict, at = decide_handshake(st, upto, final)
    if st.version_num == nil or st.version_num == 0x0304 then return verdict, at end
    local function seen(k)
        local v = st[k]
        if v ~= nil and v <= upto then return v end
        return nil
    end
    if seen("ch2") then
        local cc2 = seen("cli_cert2")
        if cc2 then
            return certificate_verdict(st.cli_cert2_count, st.cli_cert2_unread), cc2
        end
        return verdict, at
    end
    local c1, c2 = seen("cli_ccs2"), seen("srv_ccs2")
    local again = (c1 and c2) and math.min(c1, c2) or c1 or c2
    if again and (verdict == "empty" or verdict == "not_requested") then
        return "hidden_renegotiation", math.max(again, at)
    end
    return verdict, at
end

----------------------------------------------------------------------------------------
-- Dissection
----------------------------------------------------------------------------------------
local function read_frame()
    local fr = {}
    local syn, ack = first(f_syn), first(f_ack)
    fr.syn, fr.ack = (syn == true or syn == 1), (ack == true or ack == 1)
    local fin, rst = first(f_fin), first(f_rst)
    fr.fin, fr.rst = (fin == true or fin == 1), (rst == true or rst == 1)
    local caplen, len = first(f_caplen), first(f_len)
    fr.gap = (caplen ~= nil and len ~= nil and caplen < len) or #all(f_lost) > 0
    fr.ctypes = values(f_ctype)
    fr.hstypes = values(f_hstype)
    fr.hsver = first(f_hsver)
    fr.supver = first(f_supver)
    fr.exttypes = values(f_exttype)
    fr.alevels = values(f_alevel)
    fr.adescs = values(f_adesc)
    fr.snis = values(f_sni)
    fr.smtp_req = #all(f_smtp_req) > 0
    fr.smtp_rsp = #all(f_smtp_rsp) > 0
    fr.cmdlines = values(f_smtp_cmdline)
    fr.cmds = values(f_smtp_cmd)
    fr.codes = values(f_smtp_code)
    fr.rspparams = values(f_smtp_rspparam)
    fr.certs = {}
    if has(fr.hstypes, 25) then
        fr.cc_len = first(f_cc_len)
        local certs = compressed_certificates(fr.cc_len)
        if certs then
            fr.certs = certs
            fr.cert_count = #certs
            if #certs > 0 then
                local ok, leaf = pcall(parse_cert, certs[1])
                if ok then fr.leaf = leaf else fr.leaf_error = tostring(leaf) end
            end
        end
    end
    if has(fr.hstypes, 11) then
        fr.certs = values(f_cert)
        fr.cert_count = #fr.certs
        if #fr.certs > 0 then
            local ok, leaf = pcall(parse_cert, bytes_of(fr.certs[1]))
            if ok then fr.leaf = leaf else fr.leaf_error = tostring(leaf) end
        end
    end
    return fr
end

local function dissect(tvb, pinfo, tree)
    local final = start_frame(pinfo, first(f_frame) ~= nil)
    local stream = first(f_stream)
    if stream == nil then return end
    local fnum = pinfo.number

    local fr = read_frame()
    local st = streams[stream]
    if not st then
        st = {}
        streams[stream] = st
    end
    local from_client = record(st, fnum, pinfo, fr)
    if from_client == nil then return end

    local upto = final and math.huge or fnum
    local verdict, at = decide(st, upto, final)
    local relevant = st.tls or st.smtp
    if not relevant then return end

    local t = tree:add(smtptls, tvb(), "SMTP/TLS client certificate")
    t:add(pf.role, from_client and "client" or "server")

    if verdict and (final or at <= fnum) then
        local vi = t:add(pf.verdict, verdict)
        vi:append_text(" (decided in frame " .. tostring(at) .. ")")
        t:add(pf.decided_in, at)
        t:set_text("SMTP/TLS client certificate: " .. verdict)
    end
    if verdict and at == fnum then
        t:add(pf.client_cert, verdict)
        if verdict == "empty" then
            t:add(pf.problem, "empty client certificate")
            t:add_proto_expert_info(ef.empty)
        elseif verdict == "not_requested" then
            t:add(pf.problem, "client certificate not requested")
            t:add_proto_expert_info(ef.not_requested)
        elseif verdict == "hidden_tls13" then
            t:add(pf.problem, "TLS 1.3: client certificate encrypted")
            t:add_proto_expert_info(ef.tls13)
        elseif verdict == "hidden_renegotiation" then
            t:add(pf.problem, "renegotiated inside TLS: the second handshake is encrypted")
            t:add_proto_expert_info(ef.renegotiation)
        elseif verdict == "resumed" then
            t:add(pf.problem, "resumed handshake: no certificates")
            t:add_proto_expert_info(ef.resumed)
        elseif verdict == "handshake_failed" then
            t:add(pf.problem, "TLS handshake failed")
            t:add_proto_expert_info(ef.failed)
        elseif verdict == "no_tls" then
            t:add(pf.problem, "no TLS in this conversation")
        elseif verdict == "not_captured" then
            t:add(pf.problem, "capture incomplete: client certificate unknown")
        end
    end

    local vs = ver_str(st)
    if vs and (final or (st.sh and st.sh <= fnum)) then t:add(pf.version, vs) end
    local cr = st.certreq
    if cr and (final or cr <= fnum) then
        t:add(pf.cert_requested, true)
    elseif (st.shd and (final or st.shd <= fnum)) or
           (st.version_num == 0x0304 and st.srv_fin and (final or st.srv_fin <= fnum)) then
        t:add(pf.cert_requested, false)
    end
    t:add(pf.exo, st.exo ~= nil and (final or st.exo <= fnum))

    if (st.starttls_req == fnum) or (st.starttls_rsp == fnum) then
        t:add(pf.starttls, true)
    end

    if has(fr.hstypes, 25) and fr.cert_count == nil then
        t:add(pf.problem, "CompressedCertificate not opened by this Wireshark build: "
            .. "certificates unknown")
    end
    if has(fr.hstypes, 11) or (has(fr.hstypes, 25) and fr.cert_count ~= nil) then
        t:add(pf.cert_count, fr.cert_count or 0)
        if from_client then t:add(pf.client_cert_count, fr.cert_count or 0) end
        local leaf = fr.leaf
        if leaf then
            t:add(pf.leaf_subject, leaf.subject)
            t:add(pf.leaf_issuer, leaf.issuer)
            t:add(pf.leaf_not_before, NSTime.new(leaf.not_before, 0))
            t:add(pf.leaf_not_after, NSTime.new(leaf.not_after, 0))
            local now = pinfo.abs_ts
            local expired = leaf.not_after < now
            local early = leaf.not_before > now
            t:add(pf.expired, expired)
            t:add(pf.not_yet_valid, early)
            t:add(pf.self_signed, leaf.self_signed)
            if expired or early then
                t:add(pf.problem, expired and "certificate expired at capture time"
                    or "certificate not yet valid at capture time")
                t:add_proto_expert_info(ef.expired)
            end
            if leaf.self_signed and from_client then
                t:add(pf.problem, "self-signed client certificate")
                t:add_proto_expert_info(ef.self_signed)
            end
        elseif fr.leaf_error then
            t:add(pf.parse_error, fr.leaf_error)
        end
    end

    for i, lvl in ipairs(fr.alevels) do
        local d = fr.adescs[i]
        if lvl == 2 then
            t:add(pf.problem, "TLS alert " .. (ALERTS[d] or tostring(d)) .. " (" ..
                tostring(d) .. ") from " .. (from_client and "client" or "server"))
        end
    end

    if not from_client then
        for i, code in ipairs(fr.codes) do
            local param = fr.rspparams[i] or ""
            if code == 550 and type(param) == "string" and param:find("5.7.64", 1, true) then
                t:add(pf.problem, "550 5.7.64 TenantAttribution")
                t:add_proto_expert_info(ef.tenant)
            end
        end
    end
end

function smtptls.dissector(tvb, pinfo, tree)
    local ok, err = pcall(dissect, tvb, pinfo, tree)
    if not ok and tree then
        pcall(function()
            tree:add(smtptls, tvb(), "SMTP/TLS client certificate: internal error: "
                .. tostring(err))
        end)
    end
end

register_postdissector(smtptls)
smtptls.prefs.info = Pref.statictext("smtptls.lua " .. VERSION ..
    ": client-certificate verdicts for SMTP/TLS (tls-smtp-report)")
