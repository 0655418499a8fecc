module omnicore.dev/examples/http-routes

go 1.24

require omnicore.dev/sdk v0.0.0

replace omnicore.dev/sdk => ../../../sdk/go
