"""Facts about Amazon Polly that the emulator reproduces, in one place.

Each fact names its source (see the project's Polly reference): [M] the botocore model,
[D] an AWS documentation page, [3P] third-party code or an issue thread quoting a real
error. UNVERIFIED marks a design choice that no source confirms; change it here.
"""

from __future__ import annotations

# --- error messages ----------------------------------------------------------------------

# Voice/engine mismatch. Real Polly answers ValidationException (not the modeled
# EngineNotSupportedException) with this message [3P: deeheber/text-to-speech-converter#30,
# speechmarkdown/speechmarkdown-vscode#520, hoffm/the-weather-in-brooklyn#1 (Ruby SDK)].
ENGINE_MISMATCH_ERROR = "ValidationException"
ENGINE_MISMATCH_MESSAGE = "This voice does not support the selected engine: {engine}"

# Malformed SSML: InvalidSsmlException "Invalid SSML request" [3P: ovos-plugin-manager#221,
# pipecat#2258, latex2speech#54 (StartSpeechSynthesisTask)].
INVALID_SSML_MESSAGE = "Invalid SSML request"

# Well-formed SSML using a tag or attribute the engine does not support: ValidationException
# with this message [3P: aws/aws-sdk-js#2845, amazon:domain on a neural voice].
UNSUPPORTED_SSML_ERROR = "ValidationException"
UNSUPPORTED_SSML_MESSAGE = "This voice does not support one of the used SSML features"

# The newscaster style <amazon:domain name="news">: "available only for the Matthew or
# Joanna voices ..., Lupe ... and Amy ... only supported when using Neural format"
# [D newscaster-tag.html].
NEWS_VOICES = ("Matthew", "Joanna", "Lupe", "Amy")

TEXT_LENGTH_MESSAGE = "Maximum text length has been exceeded"  # UNVERIFIED wording
THROTTLING_MESSAGE = "Rate exceeded"  # UNVERIFIED wording
SERVICE_FAILURE_MESSAGE = "An internal service error occurred. Please retry."  # UNVERIFIED

# --- character limits [M shape docs; D limits.html] -------------------------------------

SYNC_MAX_BILLABLE = 3_000
SYNC_MAX_TOTAL = 6_000
TASK_MAX_BILLABLE = 100_000
TASK_MAX_TOTAL = 200_000
# Billing [D limits.html: "SSML tags are not billed"; M: RequestCharacters "Number of
# billable characters synthesized"]: what is billed beyond that is UNVERIFIED; the
# emulator counts the parsed document's text content (emulator/ssml.py), on its own.
BILLING_RULE = "text content of the SSML document; tags not billed"
MAX_BREAK_SECONDS = 10.0  # <break> at most 10 s [D limits.md]
MIN_PROSODY_RATE_PERCENT = 20  # prosody rate >= 20% ("-80%" at most) [D limits.md]

# Concurrent requests per engine [D limits.html, "Concurrent requests"]: the emulator
# refuses a start (ThrottlingException) while this many of the engine's tasks are open
# (scheduled or in progress); that tasks count as requests here is UNVERIFIED.
CONCURRENCY: dict[str, int] = {"standard": 80, "neural": 18, "long-form": 26, "generative": 26}

# Task objects are kept 72 hours [M op doc].
TASK_RETENTION_SECONDS = 72 * 3600

# --- formats [M shape docs] ----------------------------------------------------------------

# Valid SampleRate per OutputFormat for SynthesizeSpeech (json: any/ignored, UNVERIFIED)
# [M: SynthesizeSpeechInput.SampleRate lists 44100 and 48000 for mp3 and ogg_vorbis].
SAMPLE_RATES: dict[str, tuple[int, ...]] = {
    "mp3": (8000, 16000, 22050, 24000, 44100, 48000),
    "ogg_vorbis": (8000, 16000, 22050, 24000, 44100, 48000),
    "ogg_opus": (48000,),
    "pcm": (8000, 16000),
    "mulaw": (8000,),
    "alaw": (8000,),
}
# ...and for StartSpeechSynthesisTask [M: StartSpeechSynthesisTaskInput.SampleRate: "The
# valid values for mp3 and ogg_vorbis are 8000, 16000, 22050, and 24000"].
TASK_SAMPLE_RATES: dict[str, tuple[int, ...]] = {
    **SAMPLE_RATES,
    "mp3": (8000, 16000, 22050, 24000),
    "ogg_vorbis": (8000, 16000, 22050, 24000),
}
# Default sample rate: mp3/ogg_vorbis 22050 on standard, 24000 on the other engines.
DEFAULT_RATE_STANDARD = 22050
DEFAULT_RATE_OTHER = 24000
DEFAULT_RATES: dict[str, int] = {"pcm": 16000, "ogg_opus": 48000, "mulaw": 8000, "alaw": 8000}

CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "ogg_vorbis": "audio/ogg",
    "ogg_opus": "audio/ogg",
    "pcm": "audio/pcm",
    "mulaw": "audio/mulaw",  # UNVERIFIED
    "alaw": "audio/alaw",  # UNVERIFIED
    "json": "application/x-json-stream",
}

# Object key extension per OutputFormat: only .mp3 is verified [awscli example].
EXTENSIONS: dict[str, str] = {
    "mp3": ".mp3",
    "ogg_vorbis": ".ogg",  # UNVERIFIED
    "ogg_opus": ".ogg",  # UNVERIFIED
    "pcm": ".pcm",  # UNVERIFIED
    "mulaw": ".mulaw",  # UNVERIFIED
    "alaw": ".alaw",  # UNVERIFIED
    "json": ".marks",  # UNVERIFIED
}

# SNS message spellings [3P fixture: "outputFormat":"Mp3", "textType":"Text"]; the others
# follow the same rule, UNVERIFIED.
SNS_OUTPUT_FORMATS: dict[str, str] = {
    "mp3": "Mp3",
    "ogg_vorbis": "OggVorbis",
    "ogg_opus": "OggOpus",
    "pcm": "Pcm",
    "mulaw": "Mulaw",
    "alaw": "Alaw",
    "json": "Json",
}
SNS_TEXT_TYPES: dict[str, str] = {"text": "Text", "ssml": "Ssml"}
# A failed task's notification: AWS says only that the message "may" carry error
# information [D asynchronous.html]; no source shows a reason key (the 3P fixture is a
# completed task). The emulator sends none, so a client must ask GetSpeechSynthesisTask
# for TaskStatusReason [M: SynthesisTask.TaskStatusReason].
NOTIFICATION_CARRIES_REASON = False

# ListSpeechSynthesisTasks: "ordered by creation date"; direction and default page size
# UNVERIFIED: newest first, 100 per page.
LIST_NEWEST_FIRST = True
LIST_DEFAULT_MAX_RESULTS = 100

# Lexicon limits [D limits.html; the figures here are UNVERIFIED].
LEXICON_MAX_SIZE = 40_000  # characters of PLS content
LEXICON_MAX_COUNT = 100  # lexicons per account and region
LEXEME_MAX_LENGTH = 100  # characters of a grapheme/alias
LEXICON_ALPHABETS = ("ipa", "x-sampa")
PLS_NAMESPACE = "http://www.w3.org/2005/01/pronunciation-lexicon"

# The output bucket and the SNS topic must be in Polly's region [D longer-cli.html]; the
# error a task's start meets otherwise is UNVERIFIED: the emulator answers
# InvalidS3BucketException / InvalidSnsTopicArnException with this message.
OTHER_REGION_MESSAGE = "The {what} {name} is in {region}, not in this region ({here})"

ACCOUNT_ID = "123456789012"
