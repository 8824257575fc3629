using System.CommandLine;
using System.Globalization;
using MimeKit;
using Subscriptions.Bounces;

namespace Subscriptions.CommandLine;

internal static class SuppressionsCommand
{
    public static Command Create()
    {
        var list = new Command("list", "Print every suppressed address, why, and since when.");
        list.SetAction(async (result, cancellationToken) =>
        {
            using var host = await CommandHost.StartAsync(Verbs.Settings(result), services => services.AddSuppressions());
            var suppressions = await host.Services.GetRequiredService<SuppressionStore>().ListAsync(cancellationToken);
            foreach (var suppression in suppressions)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{suppression.Email}\t{suppression.Reason}\t{suppression.CreatedAt:yyyy-MM-dd HH:mm}Z\t{suppression.Detail}").TrimEnd());
            }
            Console.WriteLine($"{suppressions.Count} suppressed address(es)");
            return Verbs.Done;
        });

        var addEmail = EmailArgument();
        var add = new Command("add", "Suppress an address: it gets no email of any kind until removed.") { addEmail };
        add.SetAction(async (result, cancellationToken) =>
        {
            var email = result.GetRequiredValue(addEmail);
            using var host = await CommandHost.StartAsync(Verbs.Settings(result), services => services.AddSuppressions());
            var added = await host.Services.GetRequiredService<SuppressionStore>().AddAsync(email, cancellationToken);
            Console.WriteLine(added ? $"Suppressed {email}." : $"{email} was already suppressed.");
            return Verbs.Done;
        });

        var removeEmail = EmailArgument();
        var remove = new Command("remove", "Lift the suppression of an address; it can sign up again and be mailed.") { removeEmail };
        remove.SetAction(async (result, cancellationToken) =>
        {
            var email = result.GetRequiredValue(removeEmail);
            using var host = await CommandHost.StartAsync(Verbs.Settings(result), services => services.AddSuppressions());
            var removed = await host.Services.GetRequiredService<SuppressionStore>().RemoveAsync(email, cancellationToken);
            Console.WriteLine(removed ? $"Lifted the suppression of {email}." : $"{email} was not suppressed.");
            return Verbs.Done;
        });

        return new Command("suppressions", "The addresses that get no email (hard bounces, complaints, added by hand): list, add, remove.")
        {
            list, add, remove,
        };
    }

    private static Argument<string> EmailArgument()
    {
        var email = new Argument<string>("EMAIL") { Description = "The address, e.g. someone@example.org." };
        email.Validators.Add(result =>
        {
            var value = result.GetValueOrDefault<string>();
            if (!MailboxAddress.TryParse(value, out var mailbox) || mailbox.Address != value || !value.Contains('@', StringComparison.Ordinal))
            {
                result.AddError($"{value}: expected one bare address, e.g. someone@example.org");
            }
        });
        return email;
    }
}
