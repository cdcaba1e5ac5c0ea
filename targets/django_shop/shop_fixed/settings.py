"""Settings of the fixed twin: the shop's, with its own URL conf."""

from shop.settings import *  # noqa: F403

ROOT_URLCONF = "shop_fixed.urls"
