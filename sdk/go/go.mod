module omnicore.dev/sdk

go 1.24
