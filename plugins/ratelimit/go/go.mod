module omnicore.dev/plugins/ratelimit

go 1.24

require omnicore.dev/sdk v0.0.0

replace omnicore.dev/sdk => ../../../sdk/go
