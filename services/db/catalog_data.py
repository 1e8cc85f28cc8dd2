"""Catalog facts seeded by ``inventiv up``: the original system's providers, zones, GPU
instance types with hourly prices, and models (original-system.md §2.5), plus a mock provider
with small instance types for running the whole stack without a cloud."""

from __future__ import annotations

# (code, name, description)
PROVIDERS = [
    ("mock", "Mock", "Local mock provider: each instance is an agent process on this machine"),
    ("scaleway", "Scaleway", "Scaleway GPU instances"),
]

# provider code -> [(region code, region name, active, [(zone code, zone name)])]
REGIONS = {
    "mock": [("local", "Local", True, [("local", "Local")])],
    "scaleway": [
        ("fr-par", "Paris", True, [("fr-par-1", "Paris 1"), ("fr-par-2", "Paris 2")]),
        ("nl-ams", "Amsterdam", True, [("nl-ams-1", "Amsterdam 1")]),
        ("pl-waw", "Warsaw", False, []),
    ],
}

# (provider, code, gpus, vram/GPU GB, vCPU, RAM GB, bandwidth bps, EUR/hour, zones where available)
INSTANCE_TYPES = [
    ("mock", "mock-local-instance", 1, 2, 4, 8, 1_000_000_000, "0.0000", ["local"]),
    # A priced mock type, so costs accrue visibly on the local stack.
    ("mock", "mock-local-small", 1, 24, 4, 16, 1_000_000_000, "0.3600", ["local"]),
    ("scaleway", "B300-SXM-8-288G", 8, 288, 224, 3840, 20_000_000_000, "60.0000", ["fr-par-2"]),
    ("scaleway", "H100-SXM-8-80G", 8, 80, 128, 960, 20_000_000_000, "23.0280", ["fr-par-2"]),
    ("scaleway", "H100-SXM-4-80G", 4, 80, 64, 480, 20_000_000_000, "11.6100", ["fr-par-2"]),
    ("scaleway", "H100-SXM-2-80G", 2, 80, 32, 240, 20_000_000_000, "6.0180", ["fr-par-2"]),
    ("scaleway", "H100-2-80G", 2, 80, 48, 480, 20_000_000_000, "5.4600", ["fr-par-2"]),
    ("scaleway", "H100-1-80G", 1, 80, 24, 240, 10_000_000_000, "2.7300", ["fr-par-2"]),
    ("scaleway", "L40S-8-48G", 8, 48, 64, 768, 20_000_000_000, "11.1994", ["fr-par-2"]),
    ("scaleway", "L40S-4-48G", 4, 48, 32, 384, 10_000_000_000, "5.5997", ["fr-par-2"]),
    ("scaleway", "L40S-2-48G", 2, 48, 16, 192, 5_000_000_000, "2.7998", ["fr-par-2"]),
    ("scaleway", "L40S-1-48G", 1, 48, 8, 96, 2_500_000_000, "1.3999", ["fr-par-2"]),
    ("scaleway", "L4-8-24G", 8, 24, 64, 384, 20_000_000_000, "6.0000", ["fr-par-2"]),
    ("scaleway", "L4-4-24G", 4, 24, 32, 192, 10_000_000_000, "3.0000", ["fr-par-2"]),
    ("scaleway", "L4-2-24G", 2, 24, 16, 96, 5_000_000_000, "1.5000", ["fr-par-2"]),
    ("scaleway", "L4-1-24G", 1, 24, 8, 48, 2_500_000_000, "0.7500", ["fr-par-2"]),
    ("scaleway", "RENDER-S", 1, 16, 10, 42, 2_000_000_000, "1.2210", ["fr-par-2"]),
]

# (name, served id, required VRAM GB, context length, data volume GB, metadata)
MODELS = [
    ("Meta Llama 3 8B Instruct", "meta-llama/Meta-Llama-3-8B-Instruct", 16, 8192, 200, {}),
    ("Meta Llama 3 70B Instruct", "meta-llama/Meta-Llama-3-70B-Instruct", 160, 8192, 1000, {}),
    ("Llama 3.1 8B Instruct", "meta-llama/Llama-3.1-8B-Instruct", 16, 131072, 200, {}),
    ("Llama 3.1 70B Instruct", "meta-llama/Llama-3.1-70B-Instruct", 160, 131072, 1200, {}),
    ("Mistral 7B Instruct v0.2", "mistralai/Mistral-7B-Instruct-v0.2", 16, 32768, 200, {}),
    ("Mixtral 8x7B Instruct", "mistralai/Mixtral-8x7B-Instruct-v0.1", 48, 32768, 400, {}),
    ("Mixtral 8x22B Instruct", "mistralai/Mixtral-8x22B-Instruct-v0.1", 96, 65536, 800, {}),
    ("Mock Echo Model", "mock-echo-model", 0, 2048, 0, {"provider_restriction": "mock"}),
    ("Qwen 2.5 0.5B Instruct", "Qwen/Qwen2.5-0.5B-Instruct", 2, 2048, 50, {}),
    ("Qwen 2.5 7B Instruct", "Qwen/Qwen2.5-7B-Instruct", 16, 32768, 200, {}),
    ("Qwen 2.5 14B Instruct", "Qwen/Qwen2.5-14B-Instruct", 28, 32768, 300, {}),
    ("Qwen 2.5 32B Instruct", "Qwen/Qwen2.5-32B-Instruct", 64, 32768, 500, {}),
    ("Qwen 2.5 72B Instruct", "Qwen/Qwen2.5-72B-Instruct", 160, 32768, 1200, {}),
    ("Gemma 2 9B IT", "google/gemma-2-9b-it", 20, 8192, 200, {}),
    ("Gemma 2 27B IT", "google/gemma-2-27b-it", 48, 8192, 500, {}),
    ("Phi-3 Mini 4K Instruct", "microsoft/Phi-3-mini-4k-instruct", 8, 4096, 80, {}),
    ("Phi-3 Medium 4K Instruct", "microsoft/Phi-3-medium-4k-instruct", 28, 4096, 200, {}),
]

# (code, label, lucide icon, colour class, category)
ACTION_TYPES = [
    ("REQUEST_CREATE", "Create requested", "plus-circle", "text-blue-600", "create"),
    ("PROVIDER_CREATE", "Server created", "server", "text-blue-600", "create"),
    ("BILLING_START", "Billing started", "euro", "text-amber-600", "finops"),
    ("BILLING_STOP", "Billing stopped", "euro", "text-amber-600", "finops"),
    ("WORKER_INSTALL_PHASE", "Install phase", "download", "text-indigo-600", "health"),
    ("WORKER_STARTING", "Worker starting", "loader", "text-indigo-600", "health"),
    ("INSTANCE_READY", "Ready", "check-circle", "text-green-600", "health"),
    ("INSTANCE_UNAVAILABLE", "Unavailable", "alert-triangle", "text-orange-600", "health"),
    ("INSTANCE_RECOVERED", "Recovered", "heart-pulse", "text-green-600", "health"),
    ("INSTANCE_STARTUP_FAILED", "Startup failed", "x-circle", "text-red-600", "health"),
    ("INSTANCE_FAILED", "Failed", "x-octagon", "text-red-600", "health"),
    ("REQUEST_TERMINATE", "Terminate requested", "trash-2", "text-red-600", "terminate"),
    ("PROVIDER_TERMINATE", "Server deleted", "server-off", "text-red-600", "terminate"),
    ("INSTANCE_TERMINATED", "Terminated", "power-off", "text-gray-600", "terminate"),
    ("ARCHIVE_INSTANCE", "Archived", "archive", "text-gray-600", "archive"),
    ("COMMAND_REJECTED", "Command rejected", "ban", "text-red-600", "error"),
]
