module github.com/modeld-dev/modeld

go 1.26

require (
	github.com/dlclark/regexp2/v2 v2.5.1 // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/tiktoken-go/tokenizer v0.10.0 // indirect
)
