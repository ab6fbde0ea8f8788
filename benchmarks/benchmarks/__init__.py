"""asv benchmark suite of fastloss (configuration: ../asv.conf.json)."""
