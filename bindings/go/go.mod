module github.com/libaioloop/aioloop/bindings/go

go 1.22
