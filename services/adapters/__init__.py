"""Everything that talks to the outside: the database and embedded PostgreSQL, migrations, locks, object
stores, the Stripe gateway, email senders and the HTTP listener. Only these modules import SDKs."""
