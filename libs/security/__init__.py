"""Who is calling and what they may do: permissions, roles, principals, tokens and API keys.

Pure or nearly so (token verification fetches the issuer's published keys); the FastAPI side
lives in libs/runtime/auth.py.
"""
