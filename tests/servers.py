"""Real servers for tests, on 127.0.0.1 with port 0: moto (S3, SNS, SQS) and the
project's Polly emulator. Fixtures are added here by the Polly engine work."""
