"""Payments: the providers (the Alipay RSA2 adapter, a development sandbox), our payment records,
unguessable trade numbers and the HTTP endpoints that talk to a provider.

A package of its own, beside engine/, persistence/ and gateway/: a payment provider is neither
storage (it holds money we do not keep) nor an entry point (its notifications are one entry
point among its several parts). gateway/ only mounts `payments.handlers.payment_routes`.
"""
