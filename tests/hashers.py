from django.contrib.auth.hashers import Argon2PasswordHasher


class FastArgon2PasswordHasher(Argon2PasswordHasher):
    """argon2id with a test-sized cost; the hash format is the production one."""

    time_cost = 1
    memory_cost = 1024
    parallelism = 1
