module github.com/libaioloop/aioloop/tests/conformance/go

go 1.22

require github.com/libaioloop/aioloop/bindings/go v0.0.0

replace github.com/libaioloop/aioloop/bindings/go => ../../../bindings/go
