//! Fixed test key pairs, generated once with `openssl` on purpose: RSA key generation is slow, and
//! fakes built from fixed keys let a test (or a staging user) load the matching private key.
//! They sign nothing real: never use them outside tests and staging.

/// RSA-2048 private key (PKCS#8 PEM) of the fake FCM service account.
pub const TEST_RSA_PRIVATE_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDK9shp56bhTGml
/dugqXwxyJZCa3UudzqWuUmskOmLUYHgJ5cUBkZkr/N9JIbDpI8viKaDYXoRUEBE
RQmeSzgFwkz9J2q4Lfvi/qFI2QRwWalL1TR6MOzpY1A82u1gw3mhY2jU1gA4XV3q
yz5Tx9U9h1QTaKeazSliXASQriJ/XFgU4Lpjz1xMQkBLnHYKGD3LtHaU70zcSiSq
1LPfeu7lJ1etRBRynZJ6DHXFR3yrwwpqaaFtDN/3pFZ4yRvRwCoKllj8+/El2AXc
OZXGjNNXo9PDAdaLhQoK8qoGx71CzxoruuBrx7SceiixMHnviBEBEwrtb6kxT8jQ
K9vh5cBlAgMBAAECggEACp4rcOLmB45MTps/tKF5Nk+EkNf3SuWA4qax1H3GQfwT
G8tma21CnHzZ85eIF08SEI4JDAF69dHpcsjbznSn6yE1jt7Thewd68ufW2TDBy+h
nC58rtHFaxY/edeIKJJBWDCPqObDHy+/PIvCaHahULU2MEe+0Onfut4OfRUnB9uQ
ZPx0tTAWhv7qdTXyo10uUcw87pLaLRRvjlXpBhb0SO7GFnP28ZIoXE7QFgnSjneW
mfrfK0Y2dS8Oa5ZOM3NWT8tQYcqDZDFCqEkIiMeRJ85ZeWecAptwM+fZJA1FYnSH
Il7NmhinBcSN3P4bTcCEz7rheVzhhJlNbe6jkFd/IQKBgQD8U9ERmrJZf/mMREP0
QMjB+J6Rw52ytM4L/DwplxclIP3ycYeXoy0Ude65IQdw/BKK5FFxH3jU5/PLpOsN
GRGyiFAeu1OFJ9B3j+kyjP9rTjE4tmMhYJWJQmuVhHTvZstu9jNSMcVXiHBTHe8R
VI98bQFo2mySRSRBxMP0D+3O0QKBgQDN6wkvoCxNRfXJorzCpleIvmXrxp63PhnS
qQkc7mD/WWG7KNdgNbCjKoUfeeH+csllFg6LnILtRsGiMCP2ePMHrvQw/WGyidWd
MOWDdUeFk+HXI2M0FmfYV+yWjR6dpOpsm35fmpLWdRnz7KK3bZ+SNTBE6FALRptN
wap4+gYFVQKBgBiRXKDXLBhUwopqtycYC7P/LglJP5h/zDQUihMOl/1QeglaDnaw
N5pvZR/3XE8e6/tEAb3+73fjYbRpSU2MLFHyvcJQQPCNENojU/RNEC11fotkDsDY
M5catXjoXa5Vlucl55dQK0O7kBw3pOhOEG5v+pwn8DxJqR8SNnYT+vaRAoGBAIg6
bzhX0hdJKmM8S37HB3AK7mi+XTBDYFgSxlmihv9HxbVJPruCqZo4vhtlyhJJJF3A
6tyILcIGJoJDMPeVasrxftGOP/0a3PyCZcTDaQ7BGA75dV73V7oz6Oxs7g1DFmfF
syRSocRJcmMCcV/CoWfb0lQ0EQh0rLgTYNFqL2OFAoGAXMfH0aKd5OrBhD6RAXLV
LRB6i+i1Vu6+m/UO/+T/t4OlTJCwRi0mwb8HCCWiWuKY597BEv48iNcTYUg6S7DZ
bRzDhGY0wVkbqk9ej9bv/6oFWRkHNGsaZ9UzTNVqffAlxgswThmAsudxenwrLN4d
gW+eDhZxGB7BRd24v0HCVgw=
-----END PRIVATE KEY-----
";

/// Public half of [`TEST_RSA_PRIVATE_KEY_PEM`] (SPKI PEM): what the fake FCM verifies with.
pub const TEST_RSA_PUBLIC_KEY_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAyvbIaeem4Uxppf3boKl8
MciWQmt1Lnc6lrlJrJDpi1GB4CeXFAZGZK/zfSSGw6SPL4img2F6EVBAREUJnks4
BcJM/SdquC374v6hSNkEcFmpS9U0ejDs6WNQPNrtYMN5oWNo1NYAOF1d6ss+U8fV
PYdUE2inms0pYlwEkK4if1xYFOC6Y89cTEJAS5x2Chg9y7R2lO9M3EokqtSz33ru
5SdXrUQUcp2Segx1xUd8q8MKammhbQzf96RWeMkb0cAqCpZY/PvxJdgF3DmVxozT
V6PTwwHWi4UKCvKqBse9Qs8aK7rga8e0nHoosTB574gRARMK7W+pMU/I0Cvb4eXA
ZQIDAQAB
-----END PUBLIC KEY-----
";

/// P-256 private key (PKCS#8 PEM): the APNs provider key, like the `.p8` file Apple hands out.
pub const TEST_P256_PRIVATE_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgWImF/y8uWTE2OgEH
fGARidXJmJkhBZI7O+eNNMU6T5ehRANCAAQ2UBn1IumqSkkcZh0D3af7rPcW9QYr
GmrXpmMXI5il2zu2J+S7bAE2kY4pVVZuCIUNuRNxQJOzPHyS7Nf+Gptk
-----END PRIVATE KEY-----
";

/// Public half of [`TEST_P256_PRIVATE_KEY_PEM`] (SPKI PEM): what the fake APNs verifies with.
pub const TEST_P256_PUBLIC_KEY_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENlAZ9SLpqkpJHGYdA92n+6z3FvUG
Kxpq16ZjFyOYpds7tifku2wBNpGOKVVWbgiFDbkTcUCTszx8kuzX/hqbZA==
-----END PUBLIC KEY-----
";
